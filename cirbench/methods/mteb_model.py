"""``mteb``: any mteb 2.x encoder (the multimodal wrappers mteb ships, or a factory's own) under cirbench's protocols.

The model's image embeddings (the document side of an image+text->image task) encode the gallery, through
cirbench's cached feature path; its fused image+text embeddings (the query side) encode each query from the
reference image, opened by the benchmark's reader, and the text. The adapter (``embedders.mteb_adapter``) hands the
model exactly the batches mteb's own retrieval pipeline builds. The mteb task whose metadata (and prompt) reaches
``encode`` follows the benchmark: CIRR and FashionIQ get mteb's own tasks, every other benchmark a generic it2i
task with no prompt. mteb is an optional extra, imported only when the method is used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cirbench.benchmarks.base import Query
from cirbench.embedders import mteb_adapter
from cirbench.methods import METHODS
from cirbench.methods.base import CAPTION_JOIN, Method, MethodEntry, MethodInfo, OwnEncoder, average_variants
from cirbench.options import Option

OPTIONS = (
    Option(
        "model",
        "str",
        "",
        "an mteb model name (loaded by mteb.get_model) or python:pkg.module:factory (factory(device=...) returns an "
        "mteb encoder)",
        check=lambda value: None if value.strip() else "an mteb model name or python:pkg.module:factory",
    ),
    Option("revision", "str", "", "the model's revision (mteb's registered one by default; required off-registry)"),
    Option("task", "str", "", "the mteb it2i task whose metadata and prompt encode() gets (empty: generic, no prompt)"),
    # M-BEIR (and so mteb) joins FashionIQ's two captions once, "c1 and c2": the text these embedders were tuned on.
    dataclasses.replace(CAPTION_JOIN, default="c1-and-c2"),
    Option(
        "batch_size",
        "int",
        32,
        "inputs per mteb batch (mteb's default; does not change the numbers)",
        minimum=1,
        keyed=False,
    ),
)


class MtebMethod(Method):
    """Queries: the model's it2i query embeddings of (reference image, text variant), each L2-normalised; several
    variants (FashionIQ's both-orders) are averaged and renormalised, as for every cirbench method."""

    preprocess = "clip"  # an own encoder: the name only keys the feature cache; the model preprocesses itself

    def __init__(self, encoder: mteb_adapter.MtebEncoder, options: Mapping[str, Any]):
        self.encoder = encoder
        self.options = dict(options)
        self.caption_join = str(self.options["fiq_join"])
        metadata = encoder.metadata
        self.task = metadata.name
        self.prompt = mteb_adapter.query_prompt(metadata)
        zero_shot, training = _training(encoder.model, self.task)
        self.info = MethodInfo(name="mteb", variant=encoder.name, training_data=training, zero_shot=zero_shot)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.encoder.name,
            "revision": self.encoder.revision,
            "mteb": mteb_adapter.mteb_version(),
            "task": self.task,
            "task_prompt": self.prompt,
            "similarity": self.encoder.similarity,
            "fiq_join": self.caption_join,
        }

    def encode_queries(self, queries: Sequence[Query], texts: Sequence[Sequence[str]], references: Any) -> torch.Tensor:
        images = [mteb_adapter.rgb_copy(image) for image in references]

        def encode(flat: list[str], owners: torch.Tensor) -> torch.Tensor:
            return self.encoder.encode_pairs([images[int(i)] for i in owners], flat)

        # average_variants indexes its third argument by query: here the query positions stand in for feature rows.
        return average_variants(encode, texts, torch.arange(len(images)))


def _training(model: Any, task: str) -> tuple[bool | None, str]:
    """What mteb's ``ModelMeta`` says the model trained on, and whether that excludes ``task`` (None when it lists
    nothing: mteb leaves some models that did train on CIRR, VLM2Vec, with an empty list; or for a generic task)."""
    meta = getattr(model, "mteb_model_meta", None)
    datasets = getattr(meta, "training_datasets", None)
    if meta is None or datasets is None:
        return None, "not stated in mteb's ModelMeta"
    if not datasets:
        return None, "mteb ModelMeta lists none"
    zero_shot = meta.is_zero_shot_on([task]) if task != mteb_adapter.GENERIC_TASK else None
    return zero_shot, f"mteb ModelMeta: {', '.join(sorted(datasets))}"


def build(encoder: Any, checkpoint: Path | None, options: Mapping[str, Any]) -> MtebMethod:
    return MtebMethod(encoder, options)


METHODS.register(
    MethodEntry(
        name="mteb",
        factory=build,
        description="an mteb encoder: its image embeddings rank the gallery, its image+text embeddings the queries",
        options=OPTIONS,
        inputs="reference_images",
        gallery="own",
        encoder=OwnEncoder(identify=mteb_adapter.identify, load=mteb_adapter.load),
        benchmark_defaults={"cirr": {"task": "CIRRIT2IRetrieval"}, "fashioniq": {"task": "FashionIQIT2IRetrieval"}},
    )
)
