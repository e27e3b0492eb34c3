"""Text encoding with pseudo tokens: open_clip's text tower run exactly like ``CLIP.encode_text``, with a learned
token at a placeholder position.

Why one module: LinCIR, SEARLE and Pic2Word all replace the embedding at a placeholder and must otherwise run the
tower exactly as CLIP does; one implementation keeps them identical, and LinCIR's trainer uses the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cirbench.errors import BackboneError


def eot_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Index of the pooled token of each row: the first end-of-text, i.e. ``argmax`` of the ids (pad id is 0)."""
    return tokens.argmax(dim=-1)


def pools_at_argmax(model: Any) -> bool:
    """True when the tower pools at ``argmax`` of the ids (CLIP's EOT), which ``eot_positions`` assumes.

    open_clip's ``eos`` pooling (first ``eos_id``) is the same when the EOS id is the vocabulary's largest id.
    """
    pool = getattr(model, "text_pool_type", "argmax")
    if pool == "argmax":
        return True
    vocab = getattr(getattr(model, "token_embedding", None), "num_embeddings", None)
    return pool == "eos" and vocab is not None and getattr(model, "text_eos_id", None) == vocab - 1


def encode_tokens(
    model: Any,
    tokens: torch.Tensor,
    pseudo_tokens: torch.Tensor | None = None,
    placeholder_id: int = 259,
    truncate: bool = False,
    first_only: bool = False,
) -> torch.Tensor:
    """Run open_clip's text tower exactly like ``CLIP.encode_text``, optionally with pseudo tokens.

    Every position whose id is ``placeholder_id`` gets that row's pseudo token (several placeholders share one
    vector, as in LinCIR), or only the first one of each row with ``first_only`` (SEARLE's and Pic2Word's rule; a
    later placeholder keeps its word embedding). ``truncate`` cuts the batch to its longest sequence up to EOT: the
    tower is causal and pools at EOT, so later positions cannot influence the result (an exact speedup).
    Returns unnormalised projected features in the tower's dtype (gradients flow into ``pseudo_tokens``).
    """
    if not pools_at_argmax(model):
        raise BackboneError(
            f"this text tower pools with {getattr(model, 'text_pool_type', None)!r} (EOS id "
            f"{getattr(model, 'text_eos_id', None)}); cirbench's text encoding pools at the EOT token "
            "(the largest id), as CLIP does, so this backbone is not supported"
        )
    cast_dtype = model.transformer.get_cast_dtype()
    if truncate and model.attn_mask is not None:  # exact only for a causal tower
        length = int(eot_positions(tokens).max().item()) + 1
        tokens = tokens[:, :length]
    length = tokens.shape[1]
    x = model.token_embedding(tokens).to(cast_dtype)
    if pseudo_tokens is not None:
        slots = tokens == placeholder_id
        if first_only:
            slots = slots & (slots.cumsum(dim=1) == 1)
        slots = slots.unsqueeze(-1)
        x = torch.where(slots, pseudo_tokens.to(cast_dtype).unsqueeze(1), x)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    attn_mask = model.attn_mask
    if attn_mask is not None:
        attn_mask = attn_mask[:length, :length]
    x = model.transformer(x, attn_mask=attn_mask)
    x = model.ln_final(x)
    return project_text(model, x[torch.arange(x.shape[0], device=x.device), eot_positions(tokens)])


def project_text(model: Any, pooled: torch.Tensor) -> torch.Tensor:
    """The text tower's final projection of pooled (EOT) features: a matrix, a Linear, or none."""
    projection = model.text_projection
    if projection is None:
        return pooled
    if isinstance(projection, torch.nn.Linear):
        return projection(pooled)
    return pooled @ projection


def tokenize_with_placeholder(
    texts: Sequence[str], context_length: int = 77, placeholder: str = "$", placeholder_id: int = 259
) -> torch.Tensor:
    """Tokenize with every ``placeholder`` as its own token ``placeholder_id``.

    Substituting ``$`` into a string is not enough: BPE merges it with neighbours (``"$."`` -> 34682). Like the
    HF special-token path upstream, the text is split at the placeholder, the pieces are tokenized separately
    and the id is inserted between them. Lower-cased and cleaned like open_clip's tokenizer; truncated to the
    context with EOT kept last, as ``open_clip.tokenize`` does.
    """
    from open_clip.tokenizer import _tokenizer

    sot, eot = _tokenizer.encoder["<start_of_text>"], _tokenizer.encoder["<end_of_text>"]
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        ids: list[int] = []
        for i, piece in enumerate(text.split(placeholder)):
            if i > 0:
                ids.append(placeholder_id)
            ids.extend(_tokenizer.encode(piece))
        ids = [sot, *ids][: context_length - 1] + [eot]
        out[row, : len(ids)] = torch.tensor(ids)
    return out
