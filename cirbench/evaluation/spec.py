"""What one evaluation is: the user's request, and the typed run spec resolved from it without loading any model.

``RunRequest`` is what a user asked for (CLI flags, a pair of cards, the demo). ``resolve`` validates it strictly
(method and protocol options typed, unknown keys refused, split names checked; a method option the user leaves out
takes the value the method declares for that benchmark, ``MethodEntry.benchmark_defaults``, else the option's
default) and identifies the weights: the backbone's from its id (a local file is hashed, never loaded), or a method's
own gallery encoder's (``OwnEncoder.identify``), and the checkpoint's from its tensors or bytes.
The result is a ``RunSpec``; with the split's data identity it gives the run key, so a finished result is found
before anything heavy is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cirbench.backbone_hints import available_here
from cirbench.backbones import BACKBONES, BackboneIdentity, backbone_identity
from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.base import Benchmark
from cirbench.errors import MethodError, OptionError, shown
from cirbench.methods import get_method_entry
from cirbench.methods.base import MethodEntry
from cirbench.options import keyed_options
from cirbench.runkey import make_key_fields
from cirbench.search import EXACT, IndexSpec, parse_index


@dataclass(frozen=True)
class RunRequest:
    """One evaluation as asked for; option values may be strings (CLI) or typed (cards)."""

    method: str
    benchmark: str
    backbone: str | None = None
    split: str | None = None
    root: Path | None = None
    checkpoint: Path | None = None
    method_options: Mapping[str, Any] = field(default_factory=dict)
    protocol_options: Mapping[str, Any] = field(default_factory=dict)
    variant: str = ""
    quick_gelu: bool | None = None
    limit: int | None = None  # only the first N queries (a smoke test; a run of its own, see ``key_fields``)
    index: str = "exact"  # how split-wide galleries are searched (``cirbench.search``)
    index_params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodRef:
    """A method with validated options and its checkpoint's identity."""

    entry: MethodEntry
    options: Mapping[str, Any]
    checkpoint: Path | None = None
    checkpoint_id: str | None = None
    variant: str = ""

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def keyed_options(self) -> dict[str, Any]:
        return keyed_options(self.entry.options, self.options)


@dataclass(frozen=True)
class RunSpec:
    """A validated evaluation: method (+ checkpoint identity), backbone (+ weights identity), benchmark, split,
    protocol options and the gallery index. Settings that never change the numbers (batch size, device, workers,
    the number of torchrun processes) are not part of it."""

    method: MethodRef
    backbone: BackboneIdentity
    benchmark: Benchmark
    split: str
    root: Path | None
    options: Mapping[str, Any]
    limit: int | None = None  # only the first N queries of the split
    index: IndexSpec = EXACT  # an approximate index is part of the run key (see ``key_fields``)

    @property
    def keyed_protocol(self) -> dict[str, Any]:
        return keyed_options(self.benchmark.options, self.options)


def key_fields(spec: RunSpec, layout: str, annotations_sha256: str, missing_images: str | None) -> dict[str, Any]:
    """What the run key of ``spec`` on its loaded data hashes (see ``cirbench.runkey``); a ``--limit`` run adds
    ``limit`` (only then, so full runs keep their keys) and so never reuses or replaces the full run's result."""
    fields = make_key_fields(
        method=spec.method.name,
        method_version=spec.method.entry.version,
        method_options=spec.method.keyed_options,
        checkpoint_id=spec.method.checkpoint_id,
        backbone=spec.backbone.model_key,
        benchmark=spec.benchmark.name,
        split=spec.split,
        protocol_version=spec.benchmark.protocol_version,
        protocol=spec.keyed_protocol,
        layout=layout,
        annotations_sha256=annotations_sha256,
        missing_images=missing_images,
    )
    if spec.limit is not None:
        fields["limit"] = spec.limit
    if spec.index.key is not None:  # an approximate index changes the numbers; exact search (any kind) does not
        fields["index"] = spec.index.key
    return fields


def resolve(request: RunRequest, *, prebuilt: bool = False) -> RunSpec:
    """Validate a request and identify its weights; loads no model (a checkpoint's tensors are read and hashed).

    ``prebuilt``: the caller evaluates a method it built itself (LinCIR's in-training phi), so no checkpoint is
    needed.
    """
    bench = get_benchmark(request.benchmark)
    split = bench.resolve_split(request.split)
    protocol = bench.parse_options(request.protocol_options)
    entry = get_method_entry(request.method)
    options = entry.parse_options({**entry.defaults_for(bench.name), **dict(request.method_options)})
    checkpoint = checkpoint_id = None
    if request.checkpoint is not None and not entry.needs_checkpoint:
        raise MethodError(f"method {entry.name!r} takes no checkpoint; leave out --checkpoint ({request.checkpoint})")
    if request.checkpoint is not None:
        checkpoint = entry.locate_checkpoint(Path(request.checkpoint))
        checkpoint_id = entry.checkpoint_id(checkpoint)
    elif entry.needs_checkpoint and not prebuilt:
        raise MethodError(f"method {entry.name!r} needs --checkpoint ({entry.checkpoint_hint})")
    method = MethodRef(entry, options, checkpoint, checkpoint_id, request.variant)
    root = Path(request.root) if request.root is not None else None
    if request.limit is not None and request.limit < 1:
        raise OptionError(f"--limit {request.limit}: give a positive number of queries (e.g. --limit 20)")
    identity = _gallery_identity(entry, options, request, checkpoint)
    index = parse_index(request.index, request.index_params)
    return RunSpec(method, identity, bench, split, root, protocol, limit=request.limit, index=index)


def _gallery_identity(
    entry: MethodEntry, options: Mapping[str, Any], request: RunRequest, checkpoint: Path | None
) -> BackboneIdentity:
    """What encodes the gallery, identified without loading it: the method's own encoder, or the shared backbone
    (given, or implied by a released checkpoint)."""
    if entry.encoder is None:
        backbone_id = request.backbone or _inferred_backbone(entry, checkpoint)
        return backbone_identity(backbone_id, request.quick_gelu)
    if request.backbone is not None:
        raise MethodError(
            f"method {entry.name!r} encodes the gallery with its own model (its options name it); "
            f"leave out --backbone ({shown(request.backbone)})"
        )
    return entry.encoder.identify(options)


def _inferred_backbone(entry: MethodEntry, checkpoint: Path | None) -> str:
    if entry.infer_backbone is not None and checkpoint is not None:
        return entry.infer_backbone(checkpoint)
    raise MethodError(f"give --backbone for method {entry.name!r}: {available_here(BACKBONES.names())}")
