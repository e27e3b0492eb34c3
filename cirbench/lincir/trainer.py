"""The LinCIR training loop: upstream's recipe and loss, on DDP, with exact speedups, checkpoints and resume.

Recipe (LINCIR.md §8.2): only phi trains, AdamW(lr 1e-4, weight decay 0.01, torch defaults otherwise), constant LR,
20k steps x 512 global batch, fresh noise every step, phi dropout 0.5.

Layout-independent randomness: every step draws the *global* batch's noise and dropout masks from one generator
(seeded once, identical on every rank, upstream draw order) and each (micro-batch, rank) takes its rows; the data
order is a per-epoch permutation of the corpus from (seed, epoch). So the device count and the accumulation split
do not change what is computed: 2 processes x B/2 equal 1 process x B up to float summation order, and a single
process without accumulation draws exactly as upstream's loop does.

Settings and their roles are in ``config``, the process group in ``distributed``, the run directory (checkpoints,
resume state, telemetry) in ``rundir``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cirbench.errors import TrainError
from cirbench.finite import LossWatch, require_finite_module
from cirbench.lincir import levers, optim, rundir
from cirbench.lincir.batches import Assembler, MicroBatch, batches
from cirbench.lincir.config import TrainConfig, TrainResult, resolve_device, resolve_precision
from cirbench.lincir.distributed import any_rank, barrier, broadcast, init_distributed, mean_over_ranks
from cirbench.lincir.objective import causal_attention, draw_randomness, encode, lincir_loss
from cirbench.lincir.packed import supports_packing
from cirbench.lincir.trainlog import TrainLog
from cirbench.phi import Phi
from cirbench.progress import StepProgress
from cirbench.threads import say_pending
from cirbench.weight_errors import library_errors

log = logging.getLogger(__name__)

__all__ = ["BatchPlan", "Trainer", "train"]
RESUME_FIX = "start the run again with --overwrite, or copy a good state.pt back"


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


def _not_called(_phi: torch.nn.Module) -> dict[str, float]:
    raise RuntimeError("validation runs on rank 0 only")


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

    def __init__(
        self, config: TrainConfig, resume: bool = False, stop_after: int | None = None, overwrite: bool = False
    ):
        self.cfg = config
        self.out = Path(config.out)
        self.resume = resume
        self.stop_after = stop_after  # testing hook: act as if interrupted after this many steps in this process
        if config.threads:
            torch.set_num_threads(config.threads)
        else:  # torch's setting as it stands (a run built in code): recorded, so train_meta.json says what ran
            self.cfg = config = dataclasses.replace(config, threads=torch.get_num_threads())
        device_type = "cuda" if config.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
        self.dist = init_distributed(device_type)
        self.device = resolve_device(config.device, self.dist)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.precision = resolve_precision(config.precision, self.device)
        levers.check(config, self.device, self.precision)  # before masks and weights: refuse what cannot run here
        if config.global_batch % (self.dist.world * config.accum):
            raise TrainError(
                f"global batch {config.global_batch} is not divisible by devices x accumulation "
                f"({self.dist.world} x {config.accum})"
            )
        self.micro = config.global_batch // (self.dist.world * config.accum)
        torch.manual_seed(config.seed + self.dist.rank)
        np.random.seed((config.seed + self.dist.rank) % 2**32)
        random.seed(config.seed + self.dist.rank)
        rundir.claim(self.out, resume, overwrite, self.dist)  # takes the run folder's writer lock
        barrier(self.dist)
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.masks = self._prepare_masks()
        self.plan = BatchPlan(len(self.masks), config.global_batch, config.seed)
        self._build_model()

    # setup ----------------------------------------------------------------------------------------------------
    def _prepare_masks(self):
        from cirbench.lincir.maskcache import MaskCache, build_mask_cache

        if self.cfg.masks:
            cache = rundir.open_prepared_masks(self.cfg)
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
        path = broadcast(self.dist, path)
        self.corpus_info = broadcast(self.dist, getattr(self, "corpus_info", None))
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
        self.optimizer = optim.adamw(self.phi.parameters(), cfg.lr, cfg.weight_decay, fused=cfg.fused_adamw)
        # fp16 towers pass fp16 gradients back to phi: scale the loss as upstream's accelerate GradScaler does.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.phi_ddp: torch.nn.Module = self.phi
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.phi_ddp = DistributedDataParallel(self.phi, device_ids=ids)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        packed = cfg.pack and supports_packing(self.model)
        # before the target cache is created in the run directory: a refused lever must leave nothing a rerun trips on
        self.speed = levers.resolve(cfg, self.device, packed, self.model.transformer.get_cast_dtype())
        self.targets = self._target_cache()
        lazy = cfg.host_sync == "log"
        self.assemble = Assembler(
            self.masks,
            self.plan,
            self.dist,
            self.micro,
            cfg.accum,
            self.device,
            self.targets,
            host_plans=packed and (lazy or cfg.prefetch or self.speed.graphs),
            pin=lazy or cfg.prefetch,
            bucket_rows=self.micro if self.speed.graphs else None,
        )
        from cirbench.lincir.selection import ModelSelector, validation_evaluator

        evaluate, why = (None, "validation runs on rank 0")
        if self.dist.main:
            evaluate, why = validation_evaluator(
                self.backbone,
                cfg.val_benchmark,
                cfg.val_root,
                cfg.val_split,
                cfg.val_batch_size,
                backbone_id=cfg.backbone,
            )
        enabled = broadcast(self.dist, evaluate is not None)
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
        barrier(self.dist)
        return TargetCache(*args)

    # the step -------------------------------------------------------------------------------------------------
    def _targets(self, micro: MicroBatch) -> torch.Tensor | None:
        if micro.cached is None:
            return None

        def compute(positions: np.ndarray) -> torch.Tensor:
            rows = torch.from_numpy(positions).to(micro.orig.device)
            plan = self.assemble.host_plan(micro.orig_host[positions]) if self.assemble.host_plans else None
            with torch.no_grad():
                return encode(self.model, micro.orig[rows], None, self.speed, plan)

        return self.targets.complete(micro.cached, compute, self.device)

    def step(self, step: int, inputs: Any = None) -> torch.Tensor:
        """One optimizer step over the global batch of ``step``; returns this rank's mean loss (detached).
        ``inputs``: where the step's micro-batches come from (``batches.batches``; default: assembled now)."""
        cfg, d = self.cfg, self.dist
        micros = inputs.get(step) if inputs is not None else self.assemble(step)
        rnd = draw_randomness(cfg.global_batch, self.backbone.embed_dim, self.phi, self.generator, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        if self.speed.graphs:  # a new step: graph outputs of the previous one may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        total = torch.zeros((), device=self.device)
        for i, micro in enumerate(micros):
            target = self._targets(micro)
            sync = d.enabled and i < cfg.accum - 1
            with self.phi_ddp.no_sync() if sync else contextlib.nullcontext():
                out = lincir_loss(
                    self.model,
                    self.phi_ddp,
                    micro.orig,
                    micro.masked,
                    target=target,
                    randomness=rnd.rows(micro.rows),
                    speed=dataclasses.replace(self.speed, causal_sdpa=False),
                    noise_scale=cfg.noise_scale,
                    l2_normalize=cfg.l2_normalize,
                    plans=micro.plans,
                )
                self.scaler.scale(out.loss / cfg.accum).backward()
            total += out.loss.detach() / cfg.accum
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return total

    def run(self) -> TrainResult:
        cfg, d = self.cfg, self.dist
        if d.main and cfg.progress:
            say_pending()  # the thread choice `train lincir` made (cirbench.threads), said as the steps start
        step, clock, losses = 0, {"wall_s": 0.0, "total_train_s": 0.0, "val_s": 0.0, "segments": 1}, []
        self.watch = LossWatch(
            self.device, self.out, f"the run diverged: lower --lr (now {cfg.lr:g}) or check the corpus"
        )
        if self.resume:
            with library_errors(TrainError, "the resume state", self.out / rundir.STATE_FILE, fix=RESUME_FIX):
                step, clock, losses = rundir.load_state(self)  # a state.pt of another shape is one line too
            require_finite_module(self.phi, f"phi parameters resumed at step {step}", self.out / rundir.STATE_FILE)
            clock["segments"] = clock.get("segments", 1) + 1
        elif d.main:
            rundir.write_config(self.out, cfg)
        clock["start_step"], clock["train_s"] = step, 0.0
        wall_base, train_base = clock["wall_s"], clock["total_train_s"]
        started = time.perf_counter()
        status, done_here = "completed", 0
        bar = _TrainProgress(cfg.progress and d.main, cfg.steps, step, cfg.global_batch)
        self.log = TrainLog(self.out, d.main, step, cfg.global_batch)
        lazy, mark = cfg.host_sync == "log", started  # lazy: the device is waited for at sync points only
        inputs = batches(self.assemble, cfg.prefetch, cfg.steps)
        with _stop_signals() as stop, causal_attention(self.model, cfg.causal_sdpa), bar, inputs as source:
            while step < cfg.steps:
                if not lazy:
                    mark = time.perf_counter()
                loss = self.step(step, source)
                step += 1
                self.watch.record(loss, step)  # on the device: read back at the next check below
                done_here += 1
                logged = step % cfg.log_every == 0 or step == cfg.steps
                due = logged or step % cfg.checkpoint_every == 0 or (self.selector.enabled and self.selector.due(step))
                value = mean_over_ranks(d, loss) if logged else None
                if value is not None:
                    losses.append(value)
                halt = stop["stop"] or (self.stop_after is not None and done_here >= self.stop_after)
                if not lazy or due or (halt and not d.enabled):  # where the host syncs; before any checkpoint
                    self.watch.verify(step, self.phi.parameters())
                if not lazy or due or halt:  # a sync point: the step's time is known here
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    now = time.perf_counter()
                    clock["train_s"] += now - mark
                    mark = now
                clock["total_train_s"] = train_base + clock["train_s"]
                bar.update(step, value, clock["train_s"], done_here)
                if value is not None:
                    self.log.train(step, value, self.optimizer.param_groups[0]["lr"], clock["train_s"])
                # Every rank must take part in agreeing on a stop: each step, or (lazy, DDP) the steps all ranks sync.
                halt = any_rank(d, halt, self.device) if not (lazy and d.enabled) or due else False
                if self.selector.enabled and self.selector.due(step):
                    t1 = time.perf_counter()
                    improved = False
                    if d.main:
                        improved = self.selector.update(step, self.phi)
                        self.log.validation(step, cfg.val_metric, self.selector.last_metrics, improved)
                        if improved:
                            rundir.save_best(self, step)
                    self.selector.load_state_dict(broadcast(d, self.selector.state_dict()))
                    barrier(d)
                    clock["val_s"] += time.perf_counter() - t1
                    mark = time.perf_counter()
                    bar.note(
                        f"val {cfg.val_metric} @ {step}: {self.selector.history[-1][cfg.val_metric]:.2f}"
                        + (" (best)" if improved else "")
                    )
                if halt or step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    clock["wall_s"] = wall_base + time.perf_counter() - started
                    status = "completed" if step >= cfg.steps else ("interrupted" if halt else "running")
                    rundir.save(self, step, clock, losses, status)
                    barrier(d)
                    mark = time.perf_counter()
                if halt and step < cfg.steps:
                    status = "interrupted"
                    break
        clock["wall_s"] = wall_base + time.perf_counter() - started
        meta = rundir.write_meta(self, step, clock, status) if d.main else {}
        return TrainResult(self.out, step, status, losses, meta)


class _TrainProgress(StepProgress):
    """The loop's progress on the main rank: steps, the last logged loss, samples/s and time left."""

    def __init__(self, enabled: bool, total: int, start: int, global_batch: int):
        super().__init__(enabled, "lincir", total, start)
        self.global_batch, self.loss = global_batch, None

    def update(self, step: int, loss: float | None, train_s: float, done: int) -> None:  # type: ignore[override]
        self.loss = loss if loss is not None else self.loss
        rate = done * self.global_batch / train_s if train_s > 0 else 0.0
        info = f"{rate:,.0f} samples/s" if self.loss is None else f"loss {self.loss:.4f} | {rate:,.0f} samples/s"
        super().update(step, info)


def train(
    config: TrainConfig, resume: bool = False, stop_after: int | None = None, overwrite: bool = False
) -> TrainResult:
    """Run (or resume) a LinCIR training run; see ``Trainer``. A new run refuses an ``out`` that holds one, unless
    ``overwrite`` removes it first."""
    try:
        return Trainer(config, resume=resume, stop_after=stop_after, overwrite=overwrite).run()
    finally:
        rundir.runlock.release(Path(config.out))  # held since ``rundir.claim``
