"""The LinCIR training loop: upstream's recipe and loss, on DDP, with exact speedups, checkpoints and resume.

Recipe (LINCIR.md §8.2): only phi trains, AdamW(lr 1e-4, weight decay 0.01, torch defaults otherwise), constant LR,
20k steps x 512 global batch, fresh noise every step, phi dropout 0.5.

Layout-independent randomness: every step draws the *global* batch's noise and dropout masks from one generator
(seeded once, identical on every rank, upstream draw order) and each (micro-batch, rank) takes its rows; the data
order is a per-epoch permutation of the corpus from (seed, epoch). So the device count and the accumulation split
do not change what is computed: 2 processes x B/2 equal 1 process x B up to float summation order, and a single
process without accumulation draws exactly as upstream's loop does.

Run directory:
``config.json`` (resolved config), ``state.pt`` (resume state), ``phi_last.safetensors``, ``phi_best.safetensors``
(when validating), ``checkpoints/phi_<step>.safetensors``, ``target_cache/``, ``train_meta.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import resource
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cirbench.lincir.objective import SpeedOptions, causal_attention, draw_randomness, encode, lincir_loss
from cirbench.lincir.packed import supports_packing
from cirbench.lincir.phi import Phi, save_safetensors

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
META_FILE = "train_meta.json"
# Config fields that may change when resuming (they do not change what a step computes).
RESUMABLE_OVERRIDES = frozenset(
    {
        "steps",
        "checkpoint_every",
        "keep_checkpoints",
        "val_every",
        "val_first",
        "val_root",
        "val_split",
        "val_benchmark",
        "val_metric",
        "val_batch_size",
        "log_every",
        "progress",
        "spacy_processes",
        "allow_download",
        "threads",
        "device",
        "masks",  # the cache may move; its key is checked on resume
    }
)


class TrainError(RuntimeError):
    """A training run that cannot start or continue (bad config, corpus too small, incompatible resume)."""


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are the paper recipe on ViT-L/14 (LINCIR.md §8.2)."""

    backbone: str = "ViT-L-14:openai"
    corpora: list[str] = field(default_factory=list)
    masks: str | None = None  # a prepared mask cache (`cirbench lincir prepare`): no corpus or spaCy needed here
    column: str | None = None
    out: str = "runs/lincir"
    steps: int = 20_000
    global_batch: int = 512
    accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    phi_dropout: float = 0.5
    noise_scale: float = 1.0
    l2_normalize: bool = False
    seed: int = 12345
    mask_mode: str = "upstream"
    spacy_model: str = "en_core_web_sm"
    spacy_processes: int = 1
    precision: str = "auto"  # auto: fp16 towers on CUDA (as upstream), fp32 on CPU; phi, noise, loss fp32
    device: str = "auto"
    truncate: bool = True
    buckets: int = 1
    causal_sdpa: bool = True
    pack: bool = True  # the tower runs on real tokens only (exact; supersedes truncate and buckets)
    target_cache: bool = True
    compile: bool = False
    checkpoint_every: int = 1000
    keep_checkpoints: bool = True
    val_benchmark: str = "cirr"
    val_split: str = "val"
    val_root: str | None = None
    val_metric: str = "R@1"
    val_every: int = 1000
    val_first: int | None = 50
    val_batch_size: int = 64
    log_every: int = 10
    progress: bool = True
    allow_download: bool = False
    threads: int | None = None  # torch intra-op threads (None: leave torch's setting)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainError(f"unknown training option(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**dict(data))

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
        """What defines the trained weights (no paths, no logging knobs): stored in every checkpoint."""
        skip = {
            "out",
            "progress",
            "log_every",
            "val_root",
            "spacy_processes",
            "allow_download",
            "device",
            "threads",
            "masks",  # a path; the cache's key and corpus hash are recorded instead
        }
        return {k: v for k, v in self.to_dict().items() if k not in skip}


@dataclass
class TrainResult:
    out: Path
    step: int
    status: str  # "completed" | "interrupted"
    losses: list[float]
    meta: dict[str, Any]


# --- distributed ---------------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device_type: str) -> Dist:
    """Join the torchrun process group (NCCL on GPU, gloo on CPU); a single process needs none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(hours=2))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), local_world)


def _barrier(d: Dist) -> None:
    if d.enabled:
        torch.distributed.barrier()


def _broadcast(d: Dist, obj: Any) -> Any:
    if not d.enabled:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _any_rank(d: Dist, flag: bool, device: torch.device) -> bool:
    if not d.enabled:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def _mean_over_ranks(d: Dist, value: torch.Tensor) -> float:
    if d.enabled:
        value = value.detach().clone()
        torch.distributed.all_reduce(value)
        value /= d.world
    return float(value.item())


# --- data order --------------------------------------------------------------------------------------------------
class BatchPlan:
    """Which captions step s uses: a per-epoch permutation from (seed, epoch), drop_last, sliced per rank."""

    def __init__(self, n: int, global_batch: int, seed: int):
        if n < global_batch:
            raise TrainError(f"the corpus has {n} captions, fewer than one global batch ({global_batch})")
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.per_epoch = n // global_batch
        self._epoch, self._perm = -1, np.zeros(0, dtype=np.int64)

    def epoch(self, step: int) -> int:
        return step // self.per_epoch

    def indices(self, step: int) -> np.ndarray:
        epoch = self.epoch(step)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        start = (step % self.per_epoch) * self.global_batch
        return self._perm[start : start + self.global_batch]

    def variant_draws(self, step: int) -> np.ndarray:
        """Uniform draws choosing each caption's random-word fallback variant (fresh per visit, as upstream)."""
        return np.random.default_rng([self.seed, 1, step]).random(self.global_batch)


# --- helpers -----------------------------------------------------------------------------------------------------
def resolve_device(name: str, d: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", d.local_rank)
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    if name != "auto":
        return name
    if device.type == "cuda":
        return "fp16"  # as upstream (--mixed_precision fp16); bf16 is an explicit opt-in
    return "fp32"


def open_prepared_masks(cfg: TrainConfig):
    """The mask cache named by ``cfg.masks``, checked against the run's masking options.

    Why: a GPU node needs neither the corpus nor spaCy when the masks were prepared elsewhere, but a cache built
    with another mode or pipeline would silently train a different recipe.
    """
    from cirbench.lincir.maskcache import FORMAT_VERSION, TOKENIZER_ID, MaskCache

    path = Path(cfg.masks).expanduser()
    how = "build one with `cirbench lincir prepare --corpus FILE` and pass the folder it prints"
    if not (path / "meta.json").is_file():
        raise TrainError(f"--masks {path}: not a prepared mask cache (no meta.json); {how}")
    if cfg.corpora:
        raise TrainError("--masks and --corpus are alternatives: the mask cache already fixes the captions")
    try:
        cache = MaskCache(path)
    except (OSError, ValueError, KeyError) as error:
        raise TrainError(f"--masks {path}: unreadable mask cache ({error}); rebuild it ({how})") from error
    meta = cache.meta
    if meta.get("format") != FORMAT_VERSION or meta.get("tokenizer") != TOKENIZER_ID:
        raise TrainError(
            f"--masks {path}: built by another cirbench version (format {meta.get('format')}, tokenizer "
            f"{meta.get('tokenizer')!r}); rebuild it ({how})"
        )
    if meta.get("mode") != cfg.mask_mode:
        raise TrainError(
            f"--masks {path} was built with mask mode {meta.get('mode')!r} but the run asks for {cfg.mask_mode!r}: "
            f"pass --mask-mode {meta.get('mode')} or prepare the masks again with --mode {cfg.mask_mode}"
        )
    spacy = meta.get("spacy") or {}
    if cfg.spacy_model not in (spacy.get("requested"), spacy.get("model"), spacy.get("package")):
        raise TrainError(
            f"--masks {path} was built with spaCy pipeline {spacy.get('model')!r} but the run asks for "
            f"{cfg.spacy_model!r}: pass --spacy-model {spacy.get('model')} or prepare the masks again"
        )
    return cache


# Options added after runs were already being written, with the value that reproduces how those older runs computed.
# A run directory without the option resumes with that value, and the option enters the hash only when it differs,
# so runs started by an older cirbench keep their hash and continue bit-exactly.
LATER_OPTIONS: dict[str, Any] = {"pack": False}


def recipe_hash(recipe: Mapping[str, Any]) -> str:
    """Hash of what a step computes (settings a resume may change are left out)."""
    fixed = {
        k: v
        for k, v in recipe.items()
        if k not in RESUMABLE_OVERRIDES and not (k in LATER_OPTIONS and v == LATER_OPTIONS[k])
    }
    return hashlib.sha256(json.dumps(fixed, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)), "peak_memory_kind": "cuda allocated"}
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_memory_bytes": int(rss_kib) * 1024, "peak_memory_kind": "process max RSS"}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine()


def _not_called(_phi: torch.nn.Module) -> dict[str, float]:
    raise RuntimeError("validation runs on rank 0 only")


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def _stop_signals() -> Iterator[dict[str, Any]]:
    """SIGINT/SIGTERM set a flag: the loop finishes its step, checkpoints and exits. A second signal aborts."""
    state: dict[str, Any] = {"stop": False, "signal": None}
    previous = {}

    def handler(signum, _frame):
        if state["stop"]:
            raise KeyboardInterrupt
        state["stop"], state["signal"] = True, signal.Signals(signum).name

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: no handlers (the caller handles interruption)
            pass
    try:
        yield state
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# --- the run -----------------------------------------------------------------------------------------------------
class Trainer:
    """One run: set up (masks, backbone, phi, optimizer, caches), then ``run()`` the loop."""

    def __init__(self, config: TrainConfig, resume: bool = False, stop_after: int | None = None):
        self.cfg = config
        self.out = Path(config.out)
        self.resume = resume
        self.stop_after = stop_after  # testing hook: act as if interrupted after this many steps in this process
        if config.threads:
            torch.set_num_threads(config.threads)
        device_type = "cuda" if config.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
        self.dist = init_distributed(device_type)
        self.device = resolve_device(config.device, self.dist)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.precision = resolve_precision(config.precision, self.device)
        if config.global_batch % (self.dist.world * config.accum):
            raise TrainError(
                f"global batch {config.global_batch} is not divisible by devices x accumulation "
                f"({self.dist.world} x {config.accum})"
            )
        self.micro = config.global_batch // (self.dist.world * config.accum)
        torch.manual_seed(config.seed + self.dist.rank)
        np.random.seed((config.seed + self.dist.rank) % 2**32)
        random.seed(config.seed + self.dist.rank)
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.masks = self._prepare_masks()
        self.plan = BatchPlan(len(self.masks), config.global_batch, config.seed)
        self._build_model()

    # setup ----------------------------------------------------------------------------------------------------
    def _prepare_masks(self):
        from cirbench.lincir.maskcache import MaskCache, build_mask_cache

        if self.cfg.masks:
            cache = open_prepared_masks(self.cfg)
            meta = cache.meta
            self.corpus_info = {"hash": meta["corpus_hash"], "captions": len(cache), "corpora": meta.get("corpora")}
            return cache
        path = None
        if self.dist.main:
            from cirbench.lincir.corpus import load_corpus

            allow = self.cfg.allow_download or None  # None: CIRBENCH_ALLOW_DOWNLOAD decides
            corpus = load_corpus(self.cfg.corpora, column=self.cfg.column, allow_download=allow)
            self.corpus_info = {"hash": corpus.hash, "captions": len(corpus), "corpora": corpus.describe()}
            cache = build_mask_cache(
                corpus,
                mode=self.cfg.mask_mode,
                spacy_model=self.cfg.spacy_model,
                processes=self.cfg.spacy_processes,
                progress=self.cfg.progress,
            )
            path = str(cache.path)
        path = _broadcast(self.dist, path)
        self.corpus_info = _broadcast(self.dist, getattr(self, "corpus_info", None))
        return MaskCache(Path(path))

    def _build_model(self) -> None:
        from cirbench.backbones import load_backbone

        cfg = self.cfg
        self.backbone = load_backbone(
            cfg.backbone, device=self.device, precision=self.precision, allow_download=cfg.allow_download or None
        )
        self.model = self.backbone.model
        if cfg.compile and not (cfg.pack and supports_packing(self.model)):  # packed: SpeedOptions.compile instead
            self.model.transformer = torch.compile(self.model.transformer, dynamic=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.phi = Phi.for_backbone(self.backbone.embed_dim, self.backbone.token_dim, cfg.phi_dropout)
        self.phi.to(self.device).train()
        self.optimizer = torch.optim.AdamW(self.phi.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        # fp16 towers pass fp16 gradients back to phi: scale the loss as upstream's accelerate GradScaler does.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.phi_ddp: torch.nn.Module = self.phi
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.phi_ddp = DistributedDataParallel(self.phi, device_ids=ids)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.targets = self._target_cache()
        from cirbench.lincir.selection import ModelSelector, validation_evaluator

        evaluate, why = (None, "validation runs on rank 0")
        if self.dist.main:
            evaluate, why = validation_evaluator(
                self.backbone, cfg.val_benchmark, cfg.val_root, cfg.val_split, cfg.val_batch_size
            )
        enabled = _broadcast(self.dist, evaluate is not None)
        if enabled and evaluate is None:  # other ranks take part in the barrier; rank 0 evaluates
            evaluate = _not_called
        self.selector = ModelSelector(evaluate, cfg.val_metric, cfg.val_every if enabled else 0, cfg.val_first, why)

    def _target_cache(self):
        from cirbench.lincir.targets import TargetCache

        if not self.cfg.target_cache:
            return None
        if self.dist.world != self.dist.local_world:
            log.warning("target cache disabled: it is shared per node and this run spans several nodes")
            return None
        dtype = self.model.transformer.get_cast_dtype()
        key = f"{self.masks.key}|{self.backbone.weights_id}|{dtype}"
        folder = self.out / "target_cache"
        args = (folder, len(self.masks), self.backbone.embed_dim, dtype, key)
        if self.dist.local_rank == 0:
            TargetCache(*args, create=True)
        _barrier(self.dist)
        return TargetCache(*args)

    # state ----------------------------------------------------------------------------------------------------
    def state_dict(self, step: int, clock: dict[str, float], losses: list[float]) -> dict[str, Any]:
        state = {
            "step": step,
            "phi": {k: v.detach().cpu() for k, v in self.phi.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state().cpu(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": [int(x) for x in np.random.get_state()[1]],
            "python_rng": [list(random.getstate()[1]), random.getstate()[2]],
            "selector": self.selector.state_dict(),
            "clock": dict(clock),
            "losses": list(losses),
            "world": self.dist.world,
            "config_hash": recipe_hash(self.cfg.recipe()),
            "masks_key": self.masks.key,
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state(self) -> tuple[int, dict[str, float], list[float]]:
        path = self.out / STATE_FILE
        if not path.is_file():
            raise TrainError(f"cannot resume: {path} does not exist (was the run ever checkpointed?)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["config_hash"] != recipe_hash(self.cfg.recipe()):
            raise TrainError(f"cannot resume {self.out}: its recipe differs from the requested one")
        if state.get("masks_key", self.masks.key) != self.masks.key:
            raise TrainError(
                f"cannot resume {self.out}: the corpus or its masks changed since the run started "
                f"(mask cache {state['masks_key']} then, {self.masks.key} now)"
            )
        if state["world"] != self.dist.world:
            log.warning(
                "resuming on %d devices a run saved on %d: results stay correct, not bit-identical",
                self.dist.world,
                state["world"],
            )
        self.phi.load_state_dict(state["phi"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        np_state = np.random.get_state()
        np.random.set_state((np_state[0], np.asarray(state["numpy_rng"], dtype=np.uint32), *np_state[2:]))
        py = state["python_rng"]
        random.setstate((3, tuple(py[0]), py[1]))
        self.selector.load_state_dict(state["selector"])
        return int(state["step"]), dict(state["clock"]), list(state["losses"])

    # checkpoints ----------------------------------------------------------------------------------------------
    def _phi_metadata(self) -> dict[str, str]:
        return {"corpus_hash": str((self.corpus_info or {}).get("hash", "")), "masks": self.masks.key}

    def save(self, step: int, clock: dict[str, float], losses: list[float], status: str) -> None:
        if not self.dist.main:
            return
        recipe = {**self.cfg.recipe(), "corpora": (self.corpus_info or {}).get("corpora")}
        save_safetensors(
            self.phi, self.out / "phi_last.safetensors", self.cfg.backbone, step, recipe, self._phi_metadata()
        )
        if self.cfg.keep_checkpoints:
            save_safetensors(
                self.phi,
                self.out / "checkpoints" / f"phi_{step:09d}.safetensors",
                self.cfg.backbone,
                step,
                recipe,
                self._phi_metadata(),
            )
        if self.targets is not None:
            self.targets.flush()
        _atomic_torch_save(self.state_dict(step, clock, losses), self.out / STATE_FILE)
        self.write_meta(step, clock, status)

    def write_meta(self, step: int, clock: dict[str, float], status: str) -> dict[str, Any]:
        from cirbench.io import atomic_write_json
        from cirbench.results import environment

        samples = (step - clock.get("start_step", 0)) * self.cfg.global_batch
        train_s = clock.get("train_s", 0.0)
        meta = {
            "schema_version": 1,
            "method": "lincir",
            "status": status,
            "backbone": self.cfg.backbone,
            "wall_time_s": round(clock.get("wall_s", 0.0), 3),
            "train_time_s": round(clock.get("total_train_s", 0.0), 3),
            "validation_time_s": round(clock.get("val_s", 0.0), 3),
            "device_type": self.device.type,
            "device_count": self.dist.world,
            "device_name": _device_name(self.device),
            "steps": step,
            "target_steps": self.cfg.steps,
            "global_batch": self.cfg.global_batch,
            "per_device_batch": self.micro,
            "accumulation": self.cfg.accum,
            "samples_seen": step * self.cfg.global_batch,
            "samples_per_s": round(samples / train_s, 3) if train_s > 0 else None,
            "precision": self.precision,
            **_peak_memory(self.device),
            "git_commit": environment(str(self.device)).get("git"),
            "environment": environment(str(self.device)),
            "corpora": (self.corpus_info or {}).get("corpora"),
            "corpus_hash": (self.corpus_info or {}).get("hash"),
            "masks": {"key": self.masks.key, **{k: self.masks.meta.get(k) for k in ("mode", "spacy", "fallbacks")}},
            "selection": self.selector.summary(),
            "checkpoint": "phi_best.safetensors" if self.selector.best_step is not None else "phi_last.safetensors",
            "speedups": {
                **dataclasses.asdict(self.cfg.speed),
                "pack": self.cfg.pack and supports_packing(self.model),  # False where the tower cannot be packed
                "target_cache": self.targets is not None,
                "tower_precision": self.precision,
            },
            "config": self.cfg.to_dict(),
            "segments": clock.get("segments", 1),
        }
        atomic_write_json(self.out / META_FILE, meta)
        return meta

    # the step -------------------------------------------------------------------------------------------------
    def _targets(self, idx: np.ndarray, orig: torch.Tensor) -> torch.Tensor | None:
        if self.targets is None:
            return None

        def compute(positions: np.ndarray) -> torch.Tensor:
            rows = torch.from_numpy(positions).to(orig.device)
            with torch.no_grad():
                return encode(self.model, orig[rows], None, self.cfg.speed)

        return self.targets.get(idx, compute, self.device)

    def step(self, step: int) -> torch.Tensor:
        """One optimizer step over the global batch of ``step``; returns this rank's mean loss (detached)."""
        cfg, d = self.cfg, self.dist
        indices = self.plan.indices(step)
        draws = self.plan.variant_draws(step)
        rnd = draw_randomness(cfg.global_batch, self.backbone.embed_dim, self.phi, self.generator, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for micro in range(cfg.accum):
            start = (micro * d.world + d.rank) * self.micro
            rows = slice(start, start + self.micro)
            orig, masked, _ = self.masks.batch(indices[rows], draws[rows])
            orig, masked = orig.to(self.device, non_blocking=True), masked.to(self.device, non_blocking=True)
            target = self._targets(indices[rows], orig)
            sync = d.enabled and micro < cfg.accum - 1
            with self.phi_ddp.no_sync() if sync else contextlib.nullcontext():
                out = lincir_loss(
                    self.model,
                    self.phi_ddp,
                    orig,
                    masked,
                    target=target,
                    randomness=rnd.rows(rows),
                    speed=dataclasses.replace(cfg.speed, causal_sdpa=False),
                    noise_scale=cfg.noise_scale,
                    l2_normalize=cfg.l2_normalize,
                )
                self.scaler.scale(out.loss / cfg.accum).backward()
            total += out.loss.detach() / cfg.accum
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return total

    def run(self) -> TrainResult:
        cfg, d = self.cfg, self.dist
        step, clock, losses = 0, {"wall_s": 0.0, "total_train_s": 0.0, "val_s": 0.0, "segments": 1}, []
        if self.resume:
            step, clock, losses = self.load_state()
            clock["segments"] = clock.get("segments", 1) + 1
        elif d.main:
            from cirbench.io import atomic_write_json

            atomic_write_json(self.out / CONFIG_FILE, cfg.to_dict())
        clock["start_step"], clock["train_s"] = step, 0.0
        wall_base, train_base = clock["wall_s"], clock["total_train_s"]
        started = time.perf_counter()
        status, done_here = "completed", 0
        bar = _Bar(cfg.progress and d.main, cfg.steps, step, cfg.global_batch)
        with _stop_signals() as stop, causal_attention(self.model, cfg.causal_sdpa), bar:
            while step < cfg.steps:
                t0 = time.perf_counter()
                loss = self.step(step)
                step += 1
                done_here += 1
                if step % cfg.log_every == 0 or step == cfg.steps:
                    value = _mean_over_ranks(d, loss)
                    losses.append(value)
                else:
                    value = None
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                clock["train_s"] += time.perf_counter() - t0
                clock["total_train_s"] = train_base + clock["train_s"]
                bar.update(step, value, clock["train_s"], done_here)
                halt = stop["stop"] or (self.stop_after is not None and done_here >= self.stop_after)
                halt = _any_rank(d, halt, self.device)
                if self.selector.enabled and self.selector.due(step):
                    t1 = time.perf_counter()
                    improved = False
                    if d.main:
                        improved = self.selector.update(step, self.phi)
                        if improved:
                            recipe = {**cfg.recipe(), "corpora": (self.corpus_info or {}).get("corpora")}
                            save_safetensors(
                                self.phi,
                                self.out / "phi_best.safetensors",
                                cfg.backbone,
                                step,
                                recipe,
                                self._phi_metadata(),
                            )
                    self.selector.load_state_dict(_broadcast(d, self.selector.state_dict()))
                    _barrier(d)
                    clock["val_s"] += time.perf_counter() - t1
                    bar.note(
                        f"val {cfg.val_metric} @ {step}: {self.selector.history[-1][cfg.val_metric]:.2f}"
                        + (" (best)" if improved else "")
                    )
                if halt or step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    clock["wall_s"] = wall_base + time.perf_counter() - started
                    status = "completed" if step >= cfg.steps else ("interrupted" if halt else "running")
                    self.save(step, clock, losses, status)
                    _barrier(d)
                if halt and step < cfg.steps:
                    status = "interrupted"
                    break
        clock["wall_s"] = wall_base + time.perf_counter() - started
        meta = self.write_meta(step, clock, status) if d.main else {}
        return TrainResult(self.out, step, status, losses, meta)


class _Bar:
    """rich progress bar on the main rank: loss, samples/s, ETA."""

    def __init__(self, enabled: bool, total: int, start: int, global_batch: int):
        self.enabled, self.total, self.start, self.global_batch = enabled, total, start, global_batch
        self.loss: float | None = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]lincir"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=self.total, completed=self.start, info="")
        return self

    def update(self, step: int, loss: float | None, train_s: float, done: int) -> None:
        if not self.enabled:
            return
        self.loss = loss if loss is not None else self.loss
        rate = done * self.global_batch / train_s if train_s > 0 else 0.0
        info = f"loss {self.loss:.4f} | {rate:,.0f} samples/s" if self.loss is not None else f"{rate:,.0f} samples/s"
        self.progress.update(self.task, completed=step, info=info)

    def note(self, text: str) -> None:
        if self.enabled:
            self.progress.console.print(text)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.stop()


def train(config: TrainConfig, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    """Run (or resume) a LinCIR training run; see ``Trainer``."""
    return Trainer(config, resume=resume, stop_after=stop_after).run()


def load_run_config(run: str | os.PathLike) -> TrainConfig:
    """The resolved config a run directory was started with."""
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        raise TrainError(f"cannot resume: {path} does not exist (is {run} a cirbench lincir run directory?)")
    return TrainConfig.from_dict({**LATER_OPTIONS, **json.loads(path.read_text())})
