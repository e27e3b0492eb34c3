"""The training levers (fused AdamW, varlen attention, bucketed CUDA graphs, lazy host sync, prefetch) are exact.

Each is compared with the plain path: bit for bit where it changes no arithmetic (plans built on the host, host
sync, prefetch), within float rounding where it changes kernels (fused AdamW, attention kernels, bucket shapes).
CUDA-only parts (flash varlen, graph capture) have tests that skip without CUDA; everything around them runs here.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from lincir_support import CAPTIONS, pad, tiny_config, torchrun_cirbench, write_corpus
from safetensors.torch import load_file
from typer.testing import CliRunner

from cirbench.errors import TrainError
from cirbench.lincir import tokenizer as tk
from cirbench.lincir.batches import PREFETCH_THREAD, Prefetcher
from cirbench.lincir.objective import SpeedOptions, draw_randomness, encode, lincir_loss
from cirbench.lincir.optim import adamw, load_state
from cirbench.lincir.packed import encode_packed
from cirbench.lincir.packplan import TOKENS_PER_ROW, plan_pack
from cirbench.lincir.phi import Phi
from cirbench.lincir.trainer import Trainer, train

pytestmark = pytest.mark.usefixtures("one_thread")  # small ops on a shared 2-core machine

MASKED = ["[$] runs across [$]", "[$] sits on [$]", "[$]", "[$] of [$] , [$]", "[$] play with [$] on [$]", "[$]"]


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path)


config = tiny_config
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def tower():
    from cirbench.backbones import load_backbone

    return load_backbone("cirbench-tiny:random")


def weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(Path(run) / "phi_last.safetensors"))


def assert_rounding_close(a: dict, b: dict, steps: int, lr: float) -> None:
    """Equal up to float rounding after ``steps`` AdamW steps: an element whose gradient is rounding noise may take
    Adam's lr-sized step either way, so the bound is steps x lr at most and a tiny mean."""
    for key, value in a.items():
        diff = (value - b[key]).abs()
        assert diff.max() <= steps * lr and diff.mean() < 1e-6, key


def no_prefetch_thread() -> bool:
    return not any(t.name.startswith(PREFETCH_THREAD) for t in threading.enumerate())


# --- packing plans built on the host, and bucketed ---------------------------------------------------------------
def test_host_plan_has_the_known_layout():
    tokens = pad([[49406, 5, 49407], [49406, 49407], [49406, 7, 8, 9, 49407]])
    plan = plan_pack(tokens)
    assert (plan.batch, plan.real, plan.length, plan.bucketed) == (3, 3, 5, False)
    assert plan.ids.tolist() == [49406, 5, 49407, 49406, 49407, 49406, 7, 8, 9, 49407]
    assert plan.flat.tolist() == [0, 1, 2, 5, 6, 10, 11, 12, 13, 14]
    assert plan.positions.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3, 4]
    assert plan.rows.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    assert plan.ends.tolist() == [2, 4, 9]
    assert plan.cu_seqlens.tolist() == [0, 3, 5, 10] and plan.cu_seqlens.dtype == torch.int32


def test_unbucketed_plan_is_the_layout_the_packed_path_built_before_host_plans():
    """The plan the default path uses, against the construction ``encode_packed`` had before plans moved to the
    host (written out again here): same index tensors, dtypes included, so the default path stays bit-exact."""
    rng = np.random.default_rng(0)
    rows = [[49406, *rng.integers(300, 49000, size=int(n)).tolist(), 49407] for n in rng.integers(0, 76, size=33)]
    tokens = pad(rows)
    lengths = tokens.argmax(-1) + 1
    length = int(lengths.max())
    flat = (torch.arange(length)[None, :] < lengths[:, None]).reshape(-1).nonzero().squeeze(1)
    before = {
        "ids": tokens[:, :length].reshape(-1).index_select(0, flat),
        "flat": flat,
        "positions": flat % length,
        "rows": torch.repeat_interleave(torch.arange(len(rows)), lengths),
        "ends": torch.cumsum(lengths, 0) - 1,
    }
    plan = plan_pack(tokens)
    assert plan.length == length and (plan.batch, plan.real) == (33, 33)
    for name, value in before.items():
        got = getattr(plan, name)
        assert got.dtype == value.dtype and torch.equal(got, value), name


def test_bucketed_plan_keeps_every_real_token_and_pads_after_eot():
    rows = [tk.tokenize(c) for c in CAPTIONS[:5]]
    tokens = pad(rows)
    real = sum(len(r) for r in rows)
    plan = plan_pack(tokens, rows=8)
    assert plan.bucketed and (plan.batch, plan.real, plan.length) == (8, 5, 77)
    assert plan.tokens in {8 * min(k, 77) for k in TOKENS_PER_ROW} and plan.tokens >= real + 3
    spans = plan.cu_seqlens.diff().tolist()
    assert min(spans) >= 1 and max(spans) <= 77 and sum(spans) == plan.tokens
    for r, row in enumerate(rows):  # each real row: its tokens first (same ids and positions), then id-0 padding
        start = int(plan.cu_seqlens[r])
        assert plan.ids[start : start + len(row)].tolist() == row
        assert plan.ids[start + len(row) : start + spans[r]].eq(0).all()
        assert plan.positions[start : start + spans[r]].tolist() == list(range(spans[r]))
        assert int(plan.ends[r]) == start + len(row) - 1 and int(plan.ids[plan.ends[r]]) == 49407
    assert plan.ids[int(plan.cu_seqlens[5]) :].eq(0).all()  # dummy rows hold padding only
    assert plan_pack(tokens, rows=5).batch == 5
    with pytest.raises(ValueError, match="cannot hold"):
        plan_pack(tokens, rows=4)


@pytest.mark.parametrize("attention", ["padded", "reference"])
@pytest.mark.parametrize("rows", [None, 6, 9], ids=["unbucketed", "bucketed", "bucketed+dummy-rows"])
def test_packed_kernels_and_buckets_give_the_plain_features_and_gradients(tower, attention, rows):
    model = tower.model
    tokens = pad([tk.tokenize(m) for m in MASKED])
    generator = torch.Generator().manual_seed(5)
    pseudo = torch.randn(len(tokens), model.token_embedding.weight.shape[1], generator=generator, requires_grad=True)
    plain = encode(model, tokens, pseudo, SpeedOptions.plain())
    (plain_grad,) = torch.autograd.grad(plain.square().sum(), pseudo)
    plan = plan_pack(tokens, rows=rows)
    fast = encode_packed(model, tokens, pseudo, plan=plan, attention=attention)
    (fast_grad,) = torch.autograd.grad(fast.square().sum(), pseudo)
    assert fast.shape == plain.shape
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)  # float rounding only (O(1) features)
    assert (fast_grad - plain_grad).norm() <= 1e-5 * plain_grad.norm()


@pytest.mark.parametrize("attention", ["padded", "reference"])
def test_loss_and_phi_gradients_with_host_plans_equal_the_plain_path(tower, attention):
    model = tower.model
    tokens = pad([tk.tokenize(c) for c in CAPTIONS[:6]])
    masked = pad([tk.tokenize(m) for m in MASKED])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        phi = Phi.for_backbone(tower.embed_dim, tower.token_dim)

    def run(speed, plans):
        phi.zero_grad(set_to_none=True)
        randomness = draw_randomness(len(tokens), phi.dims[0], phi, torch.Generator().manual_seed(7))
        out = lincir_loss(model, phi, tokens, masked, randomness=randomness, speed=speed, plans=plans)
        out.loss.backward()
        return out.loss.item(), [p.grad.clone() for p in phi.parameters()]

    plain_loss, plain_grads = run(SpeedOptions.plain(), (None, None))
    host = (plan_pack(tokens, rows=8), plan_pack(masked, rows=8))
    loss, grads = run(SpeedOptions(pack=True, attention=attention), host)
    assert abs(loss - plain_loss) <= 1e-6 * max(1.0, abs(plain_loss))
    for a, b in zip(grads, plain_grads, strict=True):
        assert (a - b).norm() <= 1e-5 * b.norm()
    # plans built on the host are the plans the packed path builds from device ids: bit-identical
    host_loss, host_grads = run(SpeedOptions(pack=True), (plan_pack(tokens), plan_pack(masked)))
    device_loss, device_grads = run(SpeedOptions(pack=True), (None, None))
    assert host_loss == device_loss
    assert all(torch.equal(a, b) for a, b in zip(host_grads, device_grads, strict=True))


# --- CUDA only: flash varlen and graph capture (skipped here) ----------------------------------------------------
@CUDA
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_flash_varlen_equals_the_padded_path_on_cuda(dtype):
    from cirbench.backbones import load_backbone

    model = load_backbone("cirbench-tiny:random", device=torch.device("cuda"), precision="fp16").model.to(dtype)
    tokens = pad([tk.tokenize(m) for m in MASKED]).cuda()
    pseudo = torch.randn(len(tokens), model.token_embedding.weight.shape[1], device="cuda", requires_grad=True)
    padded = encode_packed(model, tokens, pseudo)
    (padded_grad,) = torch.autograd.grad(padded.float().square().sum(), pseudo)
    flash = encode_packed(model, tokens, pseudo, attention="flash")
    (flash_grad,) = torch.autograd.grad(flash.float().square().sum(), pseudo)
    torch.testing.assert_close(flash.float(), padded.float(), rtol=2e-2, atol=2e-2)  # half-precision rounding
    assert (flash_grad - padded_grad).norm() <= 2e-2 * padded_grad.norm()


@CUDA
def test_cuda_graphs_over_buckets_equal_eager_on_cuda():
    from cirbench.backbones import load_backbone

    model = load_backbone("cirbench-tiny:random", device=torch.device("cuda"), precision="fp16").model
    for texts in (MASKED, CAPTIONS[:6], MASKED):  # two buckets, then the first again (a replay)
        tokens = pad([tk.tokenize(t) for t in texts])
        pseudo = torch.randn(len(tokens), model.token_embedding.weight.shape[1], device="cuda", requires_grad=True)
        plan = plan_pack(tokens, rows=8).to("cuda")
        torch.compiler.cudagraph_mark_step_begin()
        graphed = encode_packed(model, tokens.cuda(), pseudo, plan=plan, graphs=True)
        (graphed_grad,) = torch.autograd.grad(graphed.float().square().sum(), pseudo)
        eager = encode_packed(model, tokens.cuda(), pseudo)
        (eager_grad,) = torch.autograd.grad(eager.float().square().sum(), pseudo)
        torch.testing.assert_close(graphed.float(), eager.float(), rtol=2e-2, atol=2e-2)
        assert (graphed_grad - eager_grad).norm() <= 2e-2 * eager_grad.norm()


def test_reference_kernel_refuses_arguments_flash_would_get_wrong():
    """The CPU stand-in checks what flash relies on (int32 spans covering every token, ``max_len`` at least the
    longest row), so the equality tests above also prove the arguments the flash kernel is given."""
    from cirbench.lincir.varlen import reference

    q = torch.randn(10, 2, 4)
    cu = torch.tensor([0, 3, 5, 10], dtype=torch.int32)
    assert reference(q, q, q, cu, 5).shape == (10, 2, 4)
    for bad_cu, max_len in ((cu, 4), (cu.long(), 5), (torch.tensor([0, 3, 5, 9], dtype=torch.int32), 5)):
        with pytest.raises(ValueError, match="flash's contract"):
            reference(q, q, q, bad_cu, max_len)


def test_graphs_need_a_bucketed_plan(tower):
    tokens = pad([tk.tokenize(m) for m in MASKED])
    with pytest.raises(ValueError, match="bucketed plan"):
        encode_packed(tower.model, tokens, plan=plan_pack(tokens), graphs=True)


# --- what cannot run is refused in one line; auto records what ran ----------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cuda_graphs": True}, r"cuda_graphs=true needs a CUDA device \(this run is on cpu\): pass --no-cuda-graphs"),
        ({"varlen_attention": "flash"}, "varlen_attention=flash cannot run: it needs a CUDA device"),
        ({"varlen_attention": "fast"}, "varlen_attention='fast' is not one of off, auto, reference, flash"),
        ({"varlen_attention": "reference", "pack": False}, "runs on packed tokens: turn packing on"),
        ({"host_sync": "never"}, "host_sync='never' is not one of step, log"),
    ],
)
def test_a_lever_that_cannot_run_here_is_one_line(tmp_path, corpus, options, message):
    with pytest.raises(TrainError, match=message):
        Trainer(config(corpus, tmp_path / "run", device="cpu", **options))
    assert not (tmp_path / "run" / "config.json").exists()


def test_cli_refuses_cuda_graphs_on_cpu_with_exit_2(tmp_path, corpus):
    from cirbench.cli import app

    args = ["train", "lincir", "-b", "cirbench-tiny:random", "--corpus", str(corpus), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--cuda-graphs", "--quiet"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: cuda_graphs=true needs a CUDA device (this run is on cpu): pass --no-cuda-graphs"
    ]


def test_varlen_off_written_in_yaml_is_off(tmp_path, corpus):
    """YAML (a card's ``train:``, ``--set``) reads the documented value ``off`` as false: it means off."""
    import yaml

    from cirbench.cli import app
    from cirbench.lincir.config import TrainConfig

    assert TrainConfig.from_dict(yaml.safe_load("varlen_attention: off")).varlen_attention == "off"
    args = ["train", "lincir", "-b", "cirbench-tiny:random", "--corpus", str(corpus), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--set", "varlen_attention=off", "--cuda-graphs"])
    assert result.exit_code == 2  # refused for the CUDA graphs (on a CPU), not for the value `off`
    assert result.output.strip().splitlines() == [
        "error: cuda_graphs=true needs a CUDA device (this run is on cpu): pass --no-cuda-graphs"
    ]


def test_a_lever_refused_for_the_tower_leaves_nothing_a_rerun_trips_on(tmp_path, corpus, monkeypatch):
    """A lever that only the loaded tower rules out (it cannot be packed) is refused before the run directory holds
    anything of a run: the same command without the lever then starts, with no --overwrite."""
    import cirbench.lincir.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "supports_packing", lambda model: False)
    with pytest.raises(TrainError, match="varlen_attention=reference runs on packed tokens"):
        Trainer(config(corpus, tmp_path / "run", device="cpu", varlen_attention="reference"))
    assert not (tmp_path / "run" / "target_cache").exists()
    assert Trainer(config(corpus, tmp_path / "run", device="cpu")).speed.pack is False


def test_auto_varlen_on_cpu_runs_padded_and_records_it(tmp_path, corpus):
    result = train(config(corpus, tmp_path / "auto", steps=2, varlen_attention="auto", device="cpu"))
    meta = json.loads((result.out / "train_meta.json").read_text())
    assert meta["config"]["varlen_attention"] == "auto"
    assert meta["speedups"]["varlen_attention"] == "padded" and meta["speedups"]["cuda_graphs"] is False
    plain = train(config(corpus, tmp_path / "plain", steps=2))
    for key, value in weights(plain.out).items():
        assert torch.equal(value, weights(result.out)[key]), key


# --- fused AdamW ---------------------------------------------------------------------------------------------------
def test_fused_adamw_training_equals_the_default_adamw(tmp_path, corpus):
    fused = train(config(corpus, tmp_path / "fused", fused_adamw=True))
    plain = train(config(corpus, tmp_path / "plain"))
    assert fused.meta["speedups"]["fused_adamw"] is True and plain.meta["speedups"]["fused_adamw"] is False
    assert_rounding_close(weights(fused.out), weights(plain.out), steps=8, lr=1e-3)
    assert fused.losses == pytest.approx(plain.losses, abs=1e-5)


@pytest.mark.parametrize(("first", "then"), [(True, False), (False, True)], ids=["fused->default", "default->fused"])
def test_adamw_states_are_interchangeable(first, then):
    """A checkpoint of one implementation loads into the other, which keeps its own flags and continues as the
    first would have (float rounding aside)."""

    def params():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return [torch.nn.Parameter(torch.randn(40, 24)), torch.nn.Parameter(torch.randn(24))]

    grads = torch.Generator().manual_seed(1)
    draws = [[torch.randn(40, 24, generator=grads), torch.randn(24, generator=grads)] for _ in range(10)]

    def steps(optimizer, group, draws):
        for step in draws:
            for p, g in zip(group, step, strict=True):
                p.grad = g.clone()
            optimizer.step()

    through = params()
    whole = adamw(through, 1e-3, 0.01, fused=first)
    steps(whole, through, draws)
    saved_params = params()
    saved = adamw(saved_params, 1e-3, 0.01, fused=first)
    steps(saved, saved_params, draws[:5])
    state = torch.load(_roundtrip(saved.state_dict()), weights_only=True)  # as state.pt stores it
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in saved_params]
    resumed = adamw(resumed_params, 1e-3, 0.01, fused=then)
    load_state(resumed, state)
    assert bool(resumed.param_groups[0]["fused"]) is then
    assert float(resumed.state[resumed_params[0]]["step"]) == 5.0
    steps(resumed, resumed_params, draws[5:])
    for a, b in zip(resumed_params, through, strict=True):
        assert (a - b).abs().max() <= 1e-6


def _roundtrip(state: dict):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_fused_run_resumes_bit_exactly(tmp_path, corpus):
    full = train(config(corpus, tmp_path / "full", steps=7, checkpoint_every=2, fused_adamw=True))
    part = train(config(corpus, tmp_path / "part", steps=7, checkpoint_every=2, fused_adamw=True), stop_after=3)
    assert part.status == "interrupted"
    resumed = train(config(corpus, tmp_path / "part", steps=7, checkpoint_every=2, fused_adamw=True), resume=True)
    for key, value in weights(full.out).items():
        assert torch.equal(value, weights(resumed.out)[key]), key
    assert full.losses == resumed.losses


# --- no host sync per step, and prefetching: bit-identical ------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [{"host_sync": "log", "log_every": 3}, {"prefetch": True}, {"prefetch": True, "host_sync": "log"}],
    ids=["host-sync-log", "prefetch", "both"],
)
def test_host_sync_and_prefetch_change_no_bit(tmp_path, corpus, options):
    """Eight steps of 8 over 24 captions cross two epoch boundaries, so later steps read cached targets that the
    prefetcher looked up before the step that cached them had run."""
    plain = train(config(corpus, tmp_path / "plain", log_every=options.get("log_every", 1)))
    lever = train(config(corpus, tmp_path / "lever", **options))
    for key, value in weights(plain.out).items():
        assert torch.equal(value, weights(lever.out)[key]), key
    assert lever.losses == plain.losses
    meta = lever.meta["speedups"]
    assert meta["host_sync"] == options.get("host_sync", "step") and meta["prefetch"] == options.get("prefetch", False)
    assert no_prefetch_thread()


def test_prefetched_run_interrupted_and_resumed_equals_uninterrupted(tmp_path, corpus):
    full = train(config(corpus, tmp_path / "full", steps=7, checkpoint_every=2))
    options = dict(steps=7, checkpoint_every=2, prefetch=True, host_sync="log")
    part = train(config(corpus, tmp_path / "part", **options), stop_after=4)
    assert part.status == "interrupted" and part.step == 4 and no_prefetch_thread()
    resumed = train(config(corpus, tmp_path / "part", **options), resume=True)
    assert resumed.status == "completed" and resumed.step == 7
    for key, value in weights(full.out).items():
        assert torch.equal(value, weights(resumed.out)[key]), key
    assert full.losses == resumed.losses and no_prefetch_thread()


def test_stop_signal_still_stops_a_prefetching_lazy_run(tmp_path, corpus):
    trainer = Trainer(config(corpus, tmp_path / "run", steps=8, prefetch=True, host_sync="log", log_every=4))
    step = trainer.step

    def signalled(s: int, source=None):
        if s == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the handler only sets the flag: the step finishes
        return step(s, source)

    trainer.step = signalled  # type: ignore[method-assign]
    result = trainer.run()
    assert result.status == "interrupted" and result.step == 3  # a single process checks the flag every step
    assert json.loads((result.out / "train_meta.json").read_text())["status"] == "interrupted"
    assert no_prefetch_thread()


def test_prefetcher_error_reaches_the_step_and_leaves_no_thread():
    calls: list[int] = []

    class Assemble:
        device = torch.device("cpu")

        def __call__(self, step):
            calls.append(step)
            if step == 2:
                raise OSError("mask cache unreadable")
            return [step]

    with pytest.raises(OSError, match="unreadable"), Prefetcher(Assemble(), end=10) as prefetcher:  # type: ignore[arg-type]
        assert prefetcher.get(0) == [0] and prefetcher.get(1) == [1]
        prefetcher.get(2)
    assert calls[:3] == [0, 1, 2] and no_prefetch_thread()
    with Prefetcher(Assemble(), end=10) as prefetcher:  # type: ignore[arg-type]
        assert prefetcher.get(5) == [5] and prefetcher.get(7) == [7]  # not the prefetched step: assembled anew


def test_target_read_after_a_late_fill_is_the_cached_value(tmp_path):
    """A row missing when the prefetcher looked it up, cached by an earlier step before use: read, not recomputed."""
    from cirbench.lincir.targets import TargetCache

    cache = TargetCache(tmp_path / "t", n=6, dim=3, dtype=torch.float16, key="k", create=True)
    stored = torch.arange(18, dtype=torch.float16).view(6, 3)
    early = cache.lookup(np.array([4, 1, 2]))
    assert early.missing.tolist() == [0, 1, 2]
    cache.get(np.array([1]), lambda pos: stored[[1]], torch.device("cpu"))  # an earlier step caches row 1
    computed: list[list[int]] = []

    def compute(positions):
        computed.append(positions.tolist())
        return stored[[4, 1, 2]][positions] + 0.5  # a recomputation would differ

    values = cache.complete(early, compute, torch.device("cpu"))
    assert computed == [[0, 2]]
    assert torch.equal(values[1], stored[1].float())
    assert torch.equal(values[[0, 2]], (stored[[4, 2]] + 0.5).float())


def test_ddp_two_gloo_processes_with_prefetch_and_lazy_sync_equal_one_process(tmp_path, corpus):
    """Each rank prefetches its own rows: 2 ranks x 4 equal 1 process x 2 micro-batches of 4, bit for bit."""
    one = train(config(corpus, tmp_path / "accum2", accum=2, steps=5))
    args = ["train", "lincir", "--backbone", "cirbench-tiny:random", "--corpus", str(corpus), "--out"]
    args += [str(tmp_path / "ddp"), "--steps", "5", "--global-batch", "8", "--lr", "1e-3", "--checkpoint-every"]
    args += ["100", "--threads", "1", "--quiet", "--device", "cpu", "--prefetch", "--host-sync", "log"]
    proc = torchrun_cirbench([*args, "--set", "log_every=1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((tmp_path / "ddp" / "train_meta.json").read_text())
    assert meta["device_count"] == 2 and meta["speedups"]["prefetch"] is True
    for key, value in weights(one.out).items():
        assert torch.equal(value, weights(tmp_path / "ddp")[key]), key


# --- older runs -------------------------------------------------------------------------------------------------
def test_a_run_started_before_the_levers_existed_resumes_bit_exactly(tmp_path, corpus):
    """config.json without the lever options (an older cirbench): the same recipe hash, and the run resumes."""
    from cirbench.lincir.config import load_run_config, recipe_hash

    new = ("fused_adamw", "varlen_attention", "cuda_graphs", "host_sync", "prefetch")
    full = train(config(corpus, tmp_path / "full", steps=6, checkpoint_every=2))
    train(config(corpus, tmp_path / "old", steps=6, checkpoint_every=2), stop_after=3)
    stored = tmp_path / "old" / "config.json"
    stored.write_text(json.dumps({k: v for k, v in json.loads(stored.read_text()).items() if k not in new}))
    (tmp_path / "old" / "run_digests.json").unlink()  # an older cirbench recorded no digests (issue 19: legacy)
    meta = tmp_path / "old" / "train_meta.json"
    meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "digests"}))
    cfg = load_run_config(tmp_path / "old")
    assert (cfg.fused_adamw, cfg.varlen_attention, cfg.cuda_graphs, cfg.host_sync, cfg.prefetch) == (
        False,
        "off",
        False,
        "step",
        False,
    )
    recipe = cfg.recipe()
    assert recipe_hash(recipe) == recipe_hash({k: v for k, v in recipe.items() if k not in new})
    assert recipe_hash(recipe) != recipe_hash({**recipe, "fused_adamw": True})  # a lever that is on is hashed
    resumed = train(cfg, resume=True)
    for key, value in weights(full.out).items():
        assert torch.equal(value, weights(resumed.out)[key]), key
