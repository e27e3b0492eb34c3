"""A LinCIR training run's settings: what each one means for resume, and the recipe hash that guards resuming.

Every ``TrainConfig`` field declares one role in its metadata, and everything else is derived from it:

- ``recipe``: defines the trained weights; stored in checkpoints, hashed, fixed on resume;
- ``schedule``: how long and how often (steps, checkpoints, validation); stored in checkpoints, not hashed,
  may change on resume;
- ``location``: paths (the run, a mask cache, validation data); not stored, not hashed, may change on resume;
- ``runtime``: how this process runs (threads, device, logging); not stored, not hashed, may change on resume.

One declaration, so a new option cannot be listed as resumable but hashed, or stored but forgotten. A field's type,
its role, bounds and allowed values make one strict ``cirbench.options.Option`` (``TRAIN_OPTIONS``), and every config
(``from_dict``: cards, ``--set``, flags, a resumed run; or built in code) is read through ``parse_options``, the path
method and benchmark options take: an unknown name with a "did you mean", a value of the wrong type, out of range
(``lr=0``, ``steps=0``, ``phi_dropout=1``) or not allowed is one ``TrainError`` naming the option, the value and what
is expected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from cirbench import devices
from cirbench.backbones import PRECISIONS
from cirbench.devices import device_problem
from cirbench.errors import TrainError, shown
from cirbench.lincir.distributed import Dist
from cirbench.lincir.levers import HOST_SYNC
from cirbench.lincir.masking import MODES as MASK_MODES
from cirbench.lincir.objective import SpeedOptions
from cirbench.lincir.varlen import CHOICES as VARLEN_CHOICES
from cirbench.options import SEED_MAX, Option, OptionValueError, parse_options

Role = Literal["recipe", "schedule", "location", "runtime"]
ROLES: tuple[Role, ...] = ("recipe", "schedule", "location", "runtime")
STORED_ROLES = frozenset({"recipe", "schedule"})  # what ``TrainConfig.recipe()`` keeps


def option(
    role: Role,
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    choices: tuple[str, ...] = (),
    check: Callable[[Any], str | None] | None = None,
    **bounds: float,
) -> Any:
    """A ``TrainConfig`` field with its role (see the module docstring) and what its ``Option`` adds to the field's
    type: allowed values, bounds (``minimum``, ``maximum``, ``exclusive_minimum``, ``exclusive_maximum``) and
    ``check(value)``, which says what is wrong with a value (``is not a device; ...``) or returns None."""
    if role not in ROLES:
        raise ValueError(f"unknown option role {role!r}; known: {', '.join(ROLES)}")
    metadata = {"role": role, "rules": {"choices": choices, "check": check, **bounds}}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are the paper recipe on ViT-L/14 (LINCIR.md §8.2)."""

    backbone: str = option("recipe", "ViT-L-14:openai")
    corpora: list[str] = option("recipe", default_factory=list)
    # A prepared mask cache (`cirbench lincir prepare`): no corpus or spaCy needed here. A path: the cache may
    # move; its key and corpus hash are recorded and checked on resume instead.
    masks: str | None = option("location", None)
    column: str | None = option("recipe", None)
    out: str = option("location", "runs/lincir")
    steps: int = option("schedule", 20_000, minimum=1)
    global_batch: int = option("recipe", 512, minimum=1)
    accum: int = option("recipe", 1, minimum=1)
    lr: float = option("recipe", 1e-4, exclusive_minimum=0, maximum=1e30)  # larger overflows AdamW in torch
    weight_decay: float = option("recipe", 0.01, minimum=0)
    phi_dropout: float = option("recipe", 0.5, minimum=0, exclusive_maximum=1)
    noise_scale: float = option("recipe", 1.0, minimum=0)
    l2_normalize: bool = option("recipe", False)
    seed: int = option("recipe", 12345, minimum=0, maximum=SEED_MAX)
    mask_mode: str = option("recipe", "upstream", choices=MASK_MODES)
    spacy_model: str = option("recipe", "en_core_web_sm")
    spacy_processes: int = option("runtime", 1, minimum=1)
    precision: str = option(
        "recipe", "auto", choices=("auto", *PRECISIONS)
    )  # auto: fp16 towers on CUDA (as upstream), fp32 on CPU; phi fp32
    device: str = option("runtime", "auto", check=device_problem)
    truncate: bool = option("recipe", True)
    buckets: int = option("recipe", 1, minimum=1)
    causal_sdpa: bool = option("recipe", True)
    pack: bool = option("recipe", True)  # the tower runs on real tokens only (exact; supersedes truncate, buckets)
    target_cache: bool = option("recipe", True)
    compile: bool = option("recipe", False)
    # Levers for the hardware limit (``levers.py``); each exact, off by default.
    fused_adamw: bool = option("recipe", False)  # single-kernel AdamW (float rounding differs: a recipe option)
    varlen_attention: str = option(
        "recipe", "off", choices=VARLEN_CHOICES
    )  # off | auto | reference | flash: packed attention kernel
    cuda_graphs: bool = option("recipe", False)  # CUDA graphs of the packed tower over bucketed shapes (CUDA only)
    host_sync: str = option(
        "runtime", "step", choices=HOST_SYNC
    )  # step | log: when the host waits for the device (bit-identical)
    prefetch: bool = option("runtime", False)  # assemble step s+1's batch in a thread during step s (bit-identical)
    checkpoint_every: int = option("schedule", 1000, minimum=1)
    keep_checkpoints: bool = option("schedule", True)
    val_benchmark: str = option("schedule", "cirr")
    val_split: str = option("schedule", "val")
    val_root: str | None = option("location", None)
    val_metric: str = option("schedule", "R@1")
    val_every: int = option("schedule", 1000, minimum=0)  # 0: never
    val_first: int | None = option("schedule", 50, minimum=0)
    val_batch_size: int = option("schedule", 64, minimum=1)
    log_every: int = option("runtime", 10, minimum=1)
    progress: bool = option("runtime", True)
    allow_download: bool = option("runtime", False)
    threads: int | None = option("runtime", None, minimum=1)  # torch intra-op threads (None: leave torch's setting)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A config from options (a card's ``train:``, ``--set``, flags, a saved run); an unknown name (with a "did
        you mean"), a value of the wrong type, out of range or not allowed is a ``TrainError`` naming the option."""
        if data.get("varlen_attention") is False:  # YAML (cards, --set) reads the documented value `off` as false
            data = {**data, "varlen_attention": "off"}
        return cls(**_typed(data))

    def __post_init__(self) -> None:
        """Every config, however built, is of its declared types, inside its bounds and allowed values."""
        _typed({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def speed(self) -> SpeedOptions:
        return SpeedOptions(
            truncate=self.truncate,
            buckets=self.buckets,
            causal_sdpa=self.causal_sdpa,
            pack=self.pack,
            compile=self.compile,
        )

    def recipe(self) -> dict[str, Any]:
        """The "recipe" and "schedule" options (no paths, no runtime knobs): stored in every checkpoint."""
        stored = fields_with_role(*STORED_ROLES)
        return {k: v for k, v in self.to_dict().items() if k in stored}


_KINDS = {int: "int", float: "float", bool: "bool", str: "str", list[str]: "list"}


def _declared_options(cls: type) -> tuple[Option, ...]:
    """One strict ``Option`` per field, made from the field's one declaration: its type (``int | None`` is a nullable
    int) and its ``option(...)``."""
    hints, out = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        nullable = type(None) in args
        base = next(a for a in args if a is not type(None)) if nullable else hint
        rules = dict(f.metadata["rules"])
        kind = "choice" if rules["choices"] else _KINDS[base]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        out.append(Option(f.name, kind, default, strict=True, nullable=nullable, **rules))
    return tuple(out)


TRAIN_OPTIONS = _declared_options(TrainConfig)


def _typed(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every training option, typed by ``parse_options``; its refusals worded as training messages."""
    try:
        return parse_options(TRAIN_OPTIONS, values, "train lincir", noun="training option", error=TrainError)
    except OptionValueError as error:
        if error.reason == "choice":
            said = f"is not one of {', '.join(error.option.choices)}"
        else:  # a check says what is wrong ("is not a device; ..."); the rest say what is expected
            said = error.wanted if error.reason == "check" else f"is not valid; expected {error.wanted}"
        raise TrainError(f"training option {error.option.name}={shown(error.value)} {said}") from error


def fields_with_role(*roles: Role) -> frozenset[str]:
    """Names of the ``TrainConfig`` fields whose role is one of ``roles``."""
    return frozenset(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["role"] in roles)


# Config fields that may change when resuming (they do not change what a step computes); left out of the hash.
RESUMABLE_OVERRIDES = fields_with_role("schedule", "location", "runtime")

# Options added after runs were already being written, with the value that reproduces how those older runs computed.
# A run directory without the option resumes with that value, and the option enters the hash only when it differs,
# so runs started by an older cirbench keep their hash and continue bit-exactly.
LATER_OPTIONS: dict[str, Any] = {"pack": False, "fused_adamw": False, "varlen_attention": "off", "cuda_graphs": False}


def recipe_hash(recipe: Mapping[str, Any]) -> str:
    """Hash of what a step computes (settings a resume may change are left out)."""
    fixed = {
        k: v
        for k, v in recipe.items()
        if k not in RESUMABLE_OVERRIDES and not (k in LATER_OPTIONS and v == LATER_OPTIONS[k])
    }
    return hashlib.sha256(json.dumps(fixed, sort_keys=True, default=str).encode()).hexdigest()[:16]


CONFIG_FILE = "config.json"  # in every run directory: the resolved config the run started with


def load_run_config(run: str | os.PathLike) -> TrainConfig:
    """The resolved config a run directory was started with (options it predates take their ``LATER_OPTIONS``)."""
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        raise TrainError(f"cannot resume: {path} does not exist (is {run} a cirbench lincir run directory?)")
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise TrainError(f"cannot resume: {path} is damaged ({error}); start the run again with --overwrite") from error
    if not isinstance(saved, dict):
        raise TrainError(f"cannot resume: {path} is not a run config; start the run again with --overwrite")
    return TrainConfig.from_dict({**LATER_OPTIONS, **saved})


@dataclass
class TrainResult:
    out: Path
    step: int
    status: str  # "completed" | "interrupted"
    losses: list[float]
    meta: dict[str, Any]


def resolve_device(name: str, d: Dist) -> torch.device:
    """``auto`` picks CUDA when present (a device this machine lacks is one line); each process takes its local
    rank's GPU."""
    name = devices.resolve_device(name)
    if name == "cuda":
        return torch.device("cuda", d.local_rank)
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto``: fp16 towers on CUDA, as upstream (--mixed_precision fp16; bf16 is an explicit opt-in); fp32 on CPU."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "fp16"
    return "fp32"
