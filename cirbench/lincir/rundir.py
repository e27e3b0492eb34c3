"""A LinCIR run directory: what the trainer writes there, and how a resume reads it back.

Files: ``config.json`` (the resolved config), ``state.pt`` (resume state), ``phi_last.safetensors``,
``phi_best.safetensors`` (when validating), ``checkpoints/phi_<step>.safetensors``, ``target_cache/`` (written by
``cirbench.lincir.targets``), ``train_meta.json``, and the log: ``metrics.jsonl`` and ``loss_curve.png``
(``cirbench.lincir.trainlog``). Every write goes through ``cirbench.io``'s atomic writer, so an
interrupted run never leaves half a file that a resume or an evaluation would read, and the run's files are recorded
in ``run_digests.json`` (``cirbench.run_digests``) as they are written and checked before a resume reads them. The
target cache's filled rows are sealed into each ``state.pt`` (``TargetCache.seal``). One process at a time writes a
run folder (``runlock``: held from ``claim`` until ``train`` returns).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import random
import resource
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from cirbench import run_digests
from cirbench.errors import IntegrityError, TrainError
from cirbench.lincir import levers, optim, runlock
from cirbench.lincir.config import CONFIG_FILE, TrainConfig, recipe_hash
from cirbench.lincir.distributed import barrier
from cirbench.lincir.packed import supports_packing
from cirbench.lincir.trainlog import LOSS_CURVE, METRICS_FILE, summarise
from cirbench.phi import save_safetensors
from cirbench.torchrun import Dist

if TYPE_CHECKING:
    from cirbench.lincir.maskcache import MaskCache
    from cirbench.lincir.objective import SpeedOptions
    from cirbench.lincir.selection import ModelSelector
    from cirbench.lincir.targets import TargetCache

log = logging.getLogger(__name__)


class Trainer(Protocol):
    """What a run folder reads from and restores into a trainer (``trainer.Trainer`` has it; declared here, the
    lower module, so the run folder never imports the trainer)."""

    cfg: TrainConfig
    out: Path
    dist: Dist
    device: torch.device
    precision: str
    micro: int
    model: Any
    phi: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    masks: MaskCache
    targets: TargetCache | None
    selector: ModelSelector
    speed: SpeedOptions
    corpus_info: dict[str, Any] | None


STATE_FILE = "state.pt"
META_FILE = "train_meta.json"
PHI_LAST = "phi_last.safetensors"
PHI_BEST = "phi_best.safetensors"
CHECKPOINTS = "checkpoints"


TARGET_CACHE = "target_cache"
RUN_FILES = (
    CONFIG_FILE,
    STATE_FILE,
    META_FILE,
    PHI_LAST,
    PHI_BEST,
    CHECKPOINTS,
    TARGET_CACHE,
    METRICS_FILE,
    LOSS_CURVE,
    run_digests.MANIFEST,
)


def claim(out: Path, resume: bool, overwrite: bool, dist: Dist) -> None:
    """Make sure a new run never lands on an old one: ``--out`` holding a run is refused unless the run is resumed,
    or removed whole first with ``--overwrite`` (only the run's own files; anything else in the folder stays).

    Takes the folder's writer lock first (``runlock``; ``trainer.train`` releases it). A resumed run's config and
    state are checked against their digests here, before masks or weights are loaded; a legacy folder (no digests)
    has its files recorded as found."""
    if resume and overwrite:
        raise TrainError("--resume and --overwrite contradict each other: continue the run, or start it again")
    runlock.acquire(out, dist)
    found = [name for name in RUN_FILES if (out / name).exists()]
    if resume:
        if run_digests.is_legacy(out):
            if dist.main and found:
                log.warning(
                    "cirbench: %s was written before run folders recorded digests (legacy); its files are recorded "
                    "as found and checked from now on",
                    out,
                )
                run_digests.adopt(out)
        else:
            for name in (CONFIG_FILE, STATE_FILE):
                run_digests.verify(out, name)
        return
    if not found:
        return
    if not overwrite:
        raise TrainError(
            f"{out} already holds a training run ({', '.join(found)}): continue it with --resume {out}, start it "
            "again with --overwrite (removes that run), or choose another --out"
        )
    if dist.main:
        for name in found:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()


def write_config(out: Path, cfg: TrainConfig) -> None:
    """The resolved config, written once when a run starts (``load_run_config`` reads it on resume)."""
    _write_json(out, CONFIG_FILE, cfg.to_dict())


def _write_json(out: Path, name: str, obj: Any) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    run_digests.write_bytes(out, name, (text + "\n").encode("utf-8"))


# --- resume state ------------------------------------------------------------------------------------------------
def state_dict(trainer: Trainer, step: int, clock: dict[str, float], losses: list[float]) -> dict[str, Any]:
    """Everything a resume needs to continue bit-exactly: weights, optimizer, every RNG, selection, clocks."""
    t = trainer
    state = {
        "step": step,
        "phi": {k: v.detach().cpu() for k, v in t.phi.state_dict().items()},
        "optimizer": t.optimizer.state_dict(),
        "scaler": t.scaler.state_dict(),
        "generator": t.generator.get_state().cpu(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": [int(x) for x in np.random.get_state()[1]],
        "python_rng": [list(random.getstate()[1]), random.getstate()[2]],
        "selector": t.selector.state_dict(),
        "clock": dict(clock),
        "losses": list(losses),
        "world": t.dist.world,
        "config_hash": recipe_hash(t.cfg.recipe()),
        "masks_key": t.masks.key,
    }
    if t.targets is not None:
        state["target_cache"] = t.targets.seal()
    if t.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(t.device)
    return state


def load_state(trainer: Trainer) -> tuple[int, dict[str, float], list[float]]:
    """Restore ``state.pt`` into the trainer after checking it is the same recipe on the same masks.

    Returns (step, clock, losses).
    """
    t = trainer
    path = t.out / STATE_FILE
    if not path.is_file():
        raise TrainError(f"cannot resume: {path} does not exist (was the run ever checkpointed?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state["config_hash"]
    except Exception as error:  # noqa: BLE001 - truncated, foreign or not a torch file
        detail = " ".join(str(error).split())[:200]
        raise TrainError(
            f"cannot resume: {path} is damaged ({type(error).__name__}: {detail}); start the run again with "
            "--overwrite, or copy a good state.pt back"
        ) from error
    if state["config_hash"] != recipe_hash(t.cfg.recipe()):
        raise TrainError(f"cannot resume {t.out}: its recipe differs from the requested one")
    if state.get("masks_key", t.masks.key) != t.masks.key:
        raise TrainError(
            f"cannot resume {t.out}: the corpus or its masks changed since the run started "
            f"(mask cache {state['masks_key']} then, {t.masks.key} now)"
        )
    if state["world"] != t.dist.world:
        log.warning(
            "resuming on %d devices a run saved on %d: results stay correct, not bit-identical",
            t.dist.world,
            state["world"],
        )
    t.phi.load_state_dict(state["phi"])
    optim.load_state(t.optimizer, state["optimizer"])  # saved fused or not: the flags of this run's optimizer
    if state.get("scaler"):
        t.scaler.load_state_dict(state["scaler"])
    t.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and t.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], t.device)
    np_state = np.random.get_state()
    np.random.set_state((np_state[0], np.asarray(state["numpy_rng"], dtype=np.uint32), *np_state[2:]))
    py = state["python_rng"]
    random.setstate((3, tuple(py[0]), py[1]))
    t.selector.load_state_dict(state["selector"])
    if t.targets is not None and "target_cache" in state:  # older states: the cache is used as it is (legacy)
        if t.dist.local_rank == 0:
            t.targets.restore(state["target_cache"])
        barrier(t.dist)
    return int(state["step"]), dict(state["clock"]), list(state["losses"])


# --- checkpoints -------------------------------------------------------------------------------------------------
def save_phi(trainer: Trainer, path: Path, step: int) -> None:
    """phi as safetensors, with the recipe, corpora, corpus hash and mask cache key in its metadata."""
    t = trainer
    info = t.corpus_info or {}
    recipe = {**t.cfg.recipe(), "corpora": info.get("corpora")}
    extra = {"corpus_hash": str(info.get("hash", "")), "masks": t.masks.key}
    rel = path.relative_to(t.out).as_posix()
    run_digests.write_staged(
        t.out, rel, lambda staged: save_safetensors(t.phi, staged, t.cfg.backbone, step, recipe, extra)
    )


def save_best(trainer: Trainer, step: int) -> None:
    save_phi(trainer, trainer.out / PHI_BEST, step)


def save(trainer: Trainer, step: int, clock: dict[str, float], losses: list[float], status: str) -> None:
    """A checkpoint (rank 0 only): phi_last, the numbered copy, flushed target cache, resume state, meta."""
    t = trainer
    if not t.dist.main:
        return
    save_phi(t, t.out / PHI_LAST, step)
    if t.cfg.keep_checkpoints:
        save_phi(t, t.out / CHECKPOINTS / f"phi_{step:09d}.safetensors", step)
    if t.targets is not None:
        t.targets.flush()
    buffer = io.BytesIO()
    torch.save(state_dict(t, step, clock, losses), buffer)
    run_digests.write_bytes(t.out, STATE_FILE, buffer.getvalue())
    write_meta(t, step, clock, status)


# --- telemetry ---------------------------------------------------------------------------------------------------
def write_meta(trainer: Trainer, step: int, clock: dict[str, float], status: str) -> dict[str, Any]:
    """``train_meta.json``: status, timings, throughput, memory, environment, data and selection; returns it."""
    from cirbench.results import environment

    t, cfg = trainer, trainer.cfg
    info = t.corpus_info or {}
    samples = (step - clock.get("start_step", 0)) * cfg.global_batch
    train_s = clock.get("train_s", 0.0)
    meta = {
        "schema_version": 1,
        "method": "lincir",
        "status": status,
        "backbone": cfg.backbone,
        "wall_time_s": round(clock.get("wall_s", 0.0), 3),
        "train_time_s": round(clock.get("total_train_s", 0.0), 3),
        "validation_time_s": round(clock.get("val_s", 0.0), 3),
        "device_type": t.device.type,
        "device_count": t.dist.world,
        "device_name": _device_name(t.device),
        "steps": step,
        "target_steps": cfg.steps,
        "global_batch": cfg.global_batch,
        "per_device_batch": t.micro,
        "accumulation": cfg.accum,
        "samples_seen": step * cfg.global_batch,
        "samples_per_s": round(samples / train_s, 3) if train_s > 0 else None,
        "precision": t.precision,
        **_peak_memory(t.device),
        "git_commit": environment(str(t.device)).get("git"),
        "environment": environment(str(t.device)),
        "corpora": info.get("corpora"),
        "corpus_hash": info.get("hash"),
        "masks": {"key": t.masks.key, **{k: t.masks.meta.get(k) for k in ("mode", "spacy", "fallbacks")}},
        "selection": t.selector.summary(),
        "checkpoint": PHI_BEST if t.selector.best_step is not None else PHI_LAST,
        "speedups": {
            **dataclasses.asdict(t.speed),
            "pack": cfg.pack and supports_packing(t.model),  # False where the tower cannot be packed
            "target_cache": t.targets is not None,
            "tower_precision": t.precision,
            **levers.record(cfg, t.speed),  # the levers as they ran (``auto`` resolved)
        },
        "config": cfg.to_dict(),
        "segments": clock.get("segments", 1),
        "log": summarise(t.out),  # final/min loss, steps logged; writes the loss curve
        "digests": run_digests.MANIFEST,  # this run records its files' digests there
    }
    _write_json(t.out, META_FILE, meta)
    return meta


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


# --- inputs ------------------------------------------------------------------------------------------------------
def open_prepared_masks(cfg: TrainConfig) -> MaskCache:
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
        cache = MaskCache(path, fix=f"rebuild it ({how})")
    except IntegrityError:
        raise
    except (OSError, ValueError, KeyError) as error:
        raise TrainError(f"--masks {path}: unreadable mask cache ({error}); rebuild it ({how})") from error
    if cache.legacy:
        log.warning("cirbench: --masks %s has no digests (an older cirbench) and is used unchecked; %s", path, how)
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
