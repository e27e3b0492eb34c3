"""Methods that map the reference image to one pseudo word and read it inside a prompt (LinCIR, SEARLE, Pic2Word).

They differ in the mapper, the prompt, the placeholder and which placeholders the pseudo word fills; the encoding
path is shared, so all of them locate the placeholder per sample and run the text tower exactly as
``CLIP.encode_text``. Prompts are tokenized literally, as the official code does with ``clip.tokenize`` (so a ``$``
or ``*`` inside a caption is tokenized as the official tokenizer would: ``**`` is one token, 4441, not two
placeholders). LinCIR fills every placeholder of a row; SEARLE (``encode_with_pseudo_tokens.py``) and Pic2Word
(``model/model.py``) fill only the first. Pic2Word upstream takes that position from row 0 of the batch for every
row, a batch-level bug that is not copied: the position is found per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cirbench.benchmarks.base import Query
from cirbench.benchmarks.prompts import fixed_prompt
from cirbench.errors import MethodError
from cirbench.methods.base import Method, MethodInfo, average_variants, batched
from cirbench.text_encoding import encode_tokens


class PseudoTokenMethod(Method):
    """A frozen mapper (image feature -> one word token) plus a prompt template with a placeholder slot.

    Subclasses set ``placeholder`` / ``placeholder_id``, ``template`` (with ``{caption}``) and ``fill``: ``every``
    placeholder of a row or only the ``first``. ``tokenization`` is ``literal`` (the official tokenizer on the
    whole prompt) or ``split`` (the text cut at every placeholder character, which is then always the id).
    """

    placeholder: str
    placeholder_id: int
    template: str
    caption_join: str = "both-orders"
    fill: str = "every"
    tokenization: str = "literal"

    def __init__(self, backbone, mapper: nn.Module, info: MethodInfo, preprocess: str, batch_size: int) -> None:
        self.backbone = backbone
        self.device = backbone.device
        self.mapper = mapper.to(backbone.device)
        self.info = info
        self.preprocess = preprocess
        self.batch_size = batch_size

    def prompts(self, texts: Sequence[str]) -> list[str]:
        """The prompt of each text variant of one query."""
        return [self.template.format(caption=text) for text in texts]

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids of the prompts; every row must keep a placeholder id for the pseudo word."""
        if self.tokenization == "split":
            tokens = self.backbone.tokenize_with_placeholder(prompts, self.placeholder, self.placeholder_id)
        else:
            tokens = self.backbone.tokenize(prompts)
        lost = (tokens == self.placeholder_id).sum(dim=1) == 0
        if bool(lost.any()):
            raise MethodError(f"prompt lost its {self.placeholder!r} slot: {prompts[int(lost.nonzero()[0])]!r}")
        return tokens

    @torch.no_grad()
    def pseudo_tokens(self, reference_features: torch.Tensor) -> torch.Tensor:
        """Mapper output on the raw (unnormalised) image embeddings, as upstream."""
        return self.mapper(reference_features.to(self.device, torch.float32))

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str], reference_features: torch.Tensor) -> torch.Tensor:
        """Unnormalised text features: row i is ``prompts[i]`` with the token of ``reference_features[i]``."""
        if len(prompts) != len(reference_features):
            raise ValueError(f"{len(prompts)} prompts for {len(reference_features)} reference features")
        tokens = self.tokenize(prompts)
        out = []
        for rows in batched(len(prompts), self.batch_size):
            pseudo = self.pseudo_tokens(reference_features[rows])
            encoded = encode_tokens(
                self.backbone.model, tokens[rows], pseudo, self.placeholder_id, first_only=self.fill == "first"
            )
            out.append(encoded.float())
        return torch.cat(out) if out else torch.zeros(0, self.backbone.embed_dim, device=self.device)

    @torch.no_grad()
    def encode_queries(
        self, queries: Sequence[Query], texts: Sequence[Sequence[str]], reference_features: torch.Tensor
    ) -> torch.Tensor:
        """A benchmark that fixes the whole sentence (``benchmarks.prompts``) is read as is; else the template."""
        variants = []
        for query, query_texts in zip(queries, texts, strict=True):
            fixed = fixed_prompt(query, self.placeholder)
            variants.append([fixed] if fixed is not None else self.prompts(query_texts))
        return average_variants(self.encode_prompts, variants, reference_features.to(self.device))
