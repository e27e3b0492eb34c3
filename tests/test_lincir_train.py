"""Training: DDP on gloo equals one process, resume is bit-exact, loss decreases, CLI and model selection."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from lincir_support import tiny_config, torchrun_cirbench, write_corpus
from safetensors.torch import load_file
from typer.testing import CliRunner

from cirbench.errors import TrainError
from cirbench.lincir.config import TrainConfig
from cirbench.lincir.selection import ModelSelector
from cirbench.lincir.trainer import _stop_signals, train

pytestmark = pytest.mark.usefixtures("one_thread")  # small ops on a shared 2-core machine


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path)


def config(corpus, out, **kw) -> TrainConfig:
    return tiny_config(corpus, out, **{"buckets": 2, **kw})


def weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "phi_last.safetensors"))


def _initial_phi() -> dict[str, torch.Tensor]:
    from cirbench.backbones import load_backbone
    from cirbench.lincir.phi import Phi

    backbone = load_backbone("cirbench-tiny:random")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12345)
        return Phi.for_backbone(backbone.embed_dim, backbone.token_dim).state_dict()


def test_ddp_two_gloo_processes_equal_one_process(tmp_path, corpus):
    one_accum = train(config(corpus, tmp_path / "accum2", accum=2, steps=5))
    one = train(config(corpus, tmp_path / "single", steps=5))
    args = ["train", "lincir", "--backbone", "cirbench-tiny:random", "--corpus", str(corpus), "--out"]
    args += [str(tmp_path / "ddp"), "--steps", "5", "--global-batch", "8", "--lr", "1e-3", "--buckets", "2"]
    args += ["--checkpoint-every", "100", "--threads", "1", "--quiet", "--device", "cpu", "--set", "log_every=1"]
    proc = torchrun_cirbench(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((tmp_path / "ddp" / "train_meta.json").read_text())
    assert meta["device_count"] == 2 and meta["per_device_batch"] == 4 and meta["global_batch"] == 8
    ddp = weights(tmp_path / "ddp")
    # Same rows per (micro-batch | rank), same global-batch randomness: bit-identical to 1 process x 2 micro-batches.
    for key, value in weights(one_accum.out).items():
        assert torch.equal(value, ddp[key]), key
    # Against one process x 8: the same maths, other float summation order. Adam turns rounding noise in a few
    # near-zero gradients into small weight differences; they stay far below what training moved.
    moved = max((weights(one.out)[k] - v).abs().max().item() for k, v in _initial_phi().items())
    assert moved > 1e-3
    # An element whose gradient is rounding noise can take Adam's ~lr-sized step either way: at most 5 steps x lr.
    for key, value in weights(one.out).items():
        diff = (value - ddp[key]).abs()
        assert diff.max() <= 5 * 1e-3 and diff.mean() < 1e-6, key
    ddp_losses = torch.load(tmp_path / "ddp" / "state.pt", weights_only=True)["losses"]
    assert ddp_losses == one_accum.losses
    assert one.losses == pytest.approx(ddp_losses, abs=1e-5)
    assert one.meta["device_count"] == 1


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, corpus):
    full = train(config(corpus, tmp_path / "full", steps=7, checkpoint_every=2))
    part = train(config(corpus, tmp_path / "part", steps=7, checkpoint_every=2), stop_after=3)
    assert part.status == "interrupted" and part.step == 3
    assert json.loads((tmp_path / "part" / "train_meta.json").read_text())["status"] == "interrupted"
    resumed = train(config(corpus, tmp_path / "part", steps=7, checkpoint_every=2), resume=True)
    assert resumed.status == "completed" and resumed.step == 7
    for key, value in weights(full.out).items():
        assert torch.equal(value, weights(resumed.out)[key]), key
    state_full = torch.load(full.out / "state.pt", weights_only=True)
    state_resumed = torch.load(resumed.out / "state.pt", weights_only=True)
    for a, b in zip(
        state_full["optimizer"]["state"].values(), state_resumed["optimizer"]["state"].values(), strict=True
    ):
        assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq"))
    assert torch.equal(state_full["generator"], state_resumed["generator"])
    assert full.losses == resumed.losses
    assert resumed.meta["segments"] == 2 and resumed.meta["steps"] == 7


def test_short_run_loss_decreases(tmp_path, corpus):
    result = train(config(corpus, tmp_path / "run", steps=60, lr=3e-3))
    losses = result.losses
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10
    meta = result.meta
    for key in (
        "wall_time_s",
        "device_type",
        "device_count",
        "steps",
        "global_batch",
        "samples_per_s",
        "peak_memory_bytes",
        "git_commit",
        "config",
    ):
        assert key in meta
    assert meta["selection"]["strategy"] == "last" and meta["checkpoint"] == "phi_last.safetensors"


def test_cli_train_on_tiny_txt_corpus(tmp_path, corpus):
    from cirbench.cli import app

    runner = CliRunner()
    out = tmp_path / "run"
    args = [
        "train",
        "lincir",
        "--backbone",
        "cirbench-tiny:random",
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--steps",
        "4",
        "--global-batch",
        "8",
        "--checkpoint-every",
        "2",
        "--threads",
        "1",
        "--quiet",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "completed: step 4/4" in result.output
    for name in (
        "phi_last.safetensors",
        "state.pt",
        "config.json",
        "train_meta.json",
        "checkpoints/phi_000000002.safetensors",
    ):
        assert (out / name).is_file(), name
    resumed = runner.invoke(app, ["train", "lincir", "--resume", str(out), "--steps", "6", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "train_meta.json").read_text())["steps"] == 6
    refused = runner.invoke(app, ["train", "lincir", "--resume", str(out), "--lr", "0.5"])
    assert refused.exit_code != 0
    assert "cannot change lr" in refused.output + str(refused.exception)
    masked = runner.invoke(app, ["lincir", "mask", "--json", "A dog runs across the green grass in the park."])
    assert masked.exit_code == 0, masked.output
    assert json.loads(masked.output)[0]["masked"] == "$ runs across $ in $ ."


def test_model_selection_keeps_the_strict_best():
    scores = iter([10.0, 12.0, 12.0, 11.0])
    selector = ModelSelector(lambda phi: {"R@1": next(scores), "R@5": 0.0}, every=1000, first=50)
    assert [s for s in (50, 100, 1000, 1500, 2000) if selector.due(s)] == [50, 1000, 2000]
    phi = torch.nn.Linear(2, 2)
    assert [selector.update(s, phi) for s in (50, 1000, 2000, 3000)] == [True, True, False, False]
    assert selector.best_step == 1000 and selector.best_value == 12.0
    assert phi.training  # evaluation ran on a frozen copy
    assert ModelSelector(None).summary()["strategy"] == "last"


def test_trainer_saves_best_from_validation(tmp_path, corpus, monkeypatch):
    import cirbench.lincir.selection as selection

    scores = iter([5.0, 9.0, 7.0])

    def fake(*_args, **_kwargs):
        return (lambda phi: {"R@1": next(scores)}), "fake cirr val"

    monkeypatch.setattr(selection, "validation_evaluator", fake)
    result = train(config(corpus, tmp_path / "run", steps=6, val_every=2, val_first=None))
    assert (tmp_path / "run" / "phi_best.safetensors").is_file()
    best = load_file(str(tmp_path / "run" / "phi_best.safetensors"))
    assert best.keys() == weights(tmp_path / "run").keys()
    selection_meta = result.meta["selection"]
    assert selection_meta["best_step"] == 4 and selection_meta["best_value"] == 9.0
    assert result.meta["checkpoint"] == "phi_best.safetensors"


def test_sigterm_sets_the_stop_flag():
    with _stop_signals() as state:
        os.kill(os.getpid(), signal.SIGTERM)
        assert state["stop"] and state["signal"] == "SIGTERM"


def test_validation_on_cirr_val_then_eval_carries_training_time(tmp_path, corpus, cirr_split):
    from cirbench.cli import app
    from cirbench.results import iter_results

    root = cirr_split
    result = train(config(corpus, tmp_path / "run", steps=4, val_every=2, val_first=None, val_root=str(root)))
    selection = result.meta["selection"]
    assert selection["strategy"] == "best R@1" and [h["step"] for h in selection["history"]] == [2, 4]
    assert (tmp_path / "run" / "phi_best.safetensors").is_file()
    out = CliRunner().invoke(
        app,
        [
            "eval",
            "--method",
            "lincir",
            "--checkpoint",
            str(tmp_path / "run"),
            "--benchmark",
            "cirr",
            "--split",
            "val",
            "--root",
            str(root),
            "--results-dir",
            str(tmp_path / "results"),
            "--device",
            "cpu",
        ],
    )
    assert out.exit_code == 0, out.output
    (record,) = list(iter_results(tmp_path / "results"))
    assert record.timing["train_s"] == result.meta["wall_time_s"]
    assert record.backbone.id == "cirbench-tiny:random"  # inferred from the checkpoint


def test_no_validation_data_keeps_last(tmp_path, corpus):
    result = train(config(corpus, tmp_path / "run", steps=2, val_root=str(tmp_path / "nowhere")))
    assert result.meta["selection"]["strategy"] == "last"
    assert "keeping the last checkpoint" in result.meta["selection"]["reason"]
    assert not (tmp_path / "run" / "phi_best.safetensors").exists()


@pytest.mark.parametrize("card", ["lincir-vit-l-14", "lincir-vit-h-14", "lincir-vit-bigg-14"])
def test_method_cards_hold_the_paper_recipe(card):
    from cirbench.cards import load_method_card
    from cirbench.commands.train import _read_config
    from cirbench.methods import get_method_entry

    path = Path(__file__).resolve().parents[1] / "methods" / f"{card}.yaml"
    parsed = load_method_card(path)
    assert parsed.method == "lincir" and parsed.backbone
    get_method_entry("lincir").parse_options(parsed.options)
    assert parsed.checkpoint == path.parent.parent / "runs" / card  # relative to the card file
    cfg = TrainConfig.from_dict(_read_config(path))
    assert (cfg.steps, cfg.global_batch, cfg.lr, cfg.weight_decay, cfg.phi_dropout) == (20000, 512, 1e-4, 0.01, 0.5)
    assert cfg.backbone == parsed.backbone and cfg.mask_mode == "upstream" and cfg.out == str(parsed.checkpoint)
    assert cfg.corpora == ["hf:dangne/gcc_caption_only", "hf:FredZhang7/stable-diffusion-prompts-2.47M"]


def test_training_from_prepared_masks_equals_training_from_the_corpus(tmp_path, corpus):
    """`lincir prepare` on one machine, `train --masks` on another: same weights, no corpus or spaCy needed."""
    from cirbench.cli import app

    prepared = CliRunner().invoke(app, ["lincir", "prepare", "--corpus", str(corpus)])
    assert prepared.exit_code == 0, prepared.output
    masks = prepared.output.split("--masks ")[-1].strip()
    from_corpus = train(config(corpus, tmp_path / "corpus", steps=4))
    from_masks = train(config(corpus, tmp_path / "masks", steps=4, corpora=[], masks=masks))
    for name, tensor in weights(from_corpus.out).items():
        assert torch.equal(tensor, weights(from_masks.out)[name]), name
    meta = json.loads((from_masks.out / "train_meta.json").read_text())
    assert meta["corpus_hash"] == json.loads((from_corpus.out / "train_meta.json").read_text())["corpus_hash"]

    with pytest.raises(TrainError, match="mask mode 'upstream'.*--mask-mode upstream"):
        train(config(corpus, tmp_path / "mode", corpora=[], masks=masks, mask_mode="whole-word"))
    with pytest.raises(TrainError, match="alternatives"):
        train(config(corpus, tmp_path / "both", masks=masks))
    with pytest.raises(TrainError, match="no meta.json.*cirbench lincir prepare"):
        train(config(corpus, tmp_path / "none", corpora=[], masks=str(tmp_path)))


def test_a_run_started_before_packing_existed_resumes_bit_exactly(tmp_path, corpus):
    """config.json without `pack` (an older cirbench): resume keeps the padded path and the same recipe hash."""
    from cirbench.lincir.config import load_run_config, recipe_hash

    full = train(config(corpus, tmp_path / "full", steps=6, checkpoint_every=2, pack=False))
    train(config(corpus, tmp_path / "old", steps=6, checkpoint_every=2, pack=False), stop_after=3)
    stored = tmp_path / "old" / "config.json"
    older = {k: v for k, v in json.loads(stored.read_text()).items() if k != "pack"}
    stored.write_text(json.dumps(older))
    (tmp_path / "old" / "run_digests.json").unlink()  # an older cirbench recorded no digests (issue 19: legacy)
    meta = tmp_path / "old" / "train_meta.json"
    meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "digests"}))
    cfg = load_run_config(tmp_path / "old")
    assert cfg.pack is False
    recipe = cfg.recipe()
    assert recipe_hash(recipe) == recipe_hash({k: v for k, v in recipe.items() if k != "pack"})
    resumed = train(cfg, resume=True)
    assert resumed.status == "completed" and resumed.step == 6
    for key, value in weights(full.out).items():
        assert torch.equal(value, weights(resumed.out)[key]), key


def test_option_roles_derive_the_old_resume_and_recipe_sets():
    """The role metadata reproduces the lists it replaced, so recipe hashes of existing runs do not change."""
    import dataclasses

    from cirbench.lincir.config import RESUMABLE_OVERRIDES, recipe_hash

    roles = {f.name: f.metadata["role"] for f in dataclasses.fields(TrainConfig)}
    assert set(roles.values()) == {"recipe", "schedule", "location", "runtime"}
    # The two lists the roles replaced, as they were written before.
    old_recipe_skip = {"out", "progress", "log_every", "val_root", "spacy_processes", "allow_download", "device"}
    old_recipe_skip |= {"threads", "masks"}
    old_resumable = {"steps", "checkpoint_every", "keep_checkpoints", "val_every", "val_first", "val_root"}
    old_resumable |= {"val_split", "val_benchmark", "val_metric", "val_batch_size", "log_every", "progress"}
    old_resumable |= {"spacy_processes", "allow_download", "threads", "device", "masks"}
    later_runtime = {"host_sync", "prefetch"}  # runtime options added later: not stored, not hashed, resumable
    old_recipe_skip |= later_runtime
    old_resumable |= later_runtime
    assert set(TrainConfig().recipe()) == set(roles) - old_recipe_skip
    # `out` (a location) is now resumable too. It was never in recipe(), so never hashed, and the CLI drops it
    # from --resume changes before checking them: hashes and resume checks are unchanged.
    assert isinstance(RESUMABLE_OVERRIDES, frozenset)
    assert RESUMABLE_OVERRIDES == frozenset(old_resumable | {"out"})
    hashed = set(TrainConfig().recipe()) - RESUMABLE_OVERRIDES
    assert hashed == set(roles) - old_recipe_skip - old_resumable
    # Hashes written by the code before the role metadata (recorded from it).
    assert recipe_hash(TrainConfig().recipe()) == "fec7f08539d516dd"
    older = TrainConfig(pack=False, steps=7, out="x", masks="y", lr=3e-4)
    assert recipe_hash(older.recipe()) == "d73ad897c8775bf3"


def test_cli_train_over_seeds_writes_one_run_per_seed(tmp_path, corpus):
    """--seeds 3,4: two runs, same recipe but the seed, so the leaderboard groups their evaluations."""
    from cirbench.cli import app
    from cirbench.lincir.config import load_run_config

    out = tmp_path / "runs"
    args = ["train", "lincir", "--backbone", "cirbench-tiny:random", "--corpus", str(corpus), "--out", str(out)]
    args += ["--steps", "2", "--global-batch", "8", "--threads", "1", "--quiet", "--seeds", "3,4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("completed: step 2/2") == 2
    configs = {s: load_run_config(out / f"seed-{s}").to_dict() for s in (3, 4)}
    assert configs[3]["seed"] == 3 and configs[4]["seed"] == 4
    assert {k: v for k, v in configs[3].items() if k not in ("seed", "out")} == {
        k: v for k, v in configs[4].items() if k not in ("seed", "out")
    }
    refused = CliRunner().invoke(app, [*args, "--seed", "1"])
    assert refused.exit_code == 2 and "--seeds trains one run per seed" in refused.output

    # eval across the seeds' checkpoints; the leaderboard averages the two runs
    from cirbench.leaderboard import collect_entries

    results = tmp_path / "results"
    evaluate = ["eval", "-m", "lincir", "-b", "cirbench-tiny:random", "--benchmark", "shapes", "-p", "renders=1"]
    evaluate += ["-p", "queries_per_style=10", "--results-dir", str(results), "--checkpoint", str(out / "seed-{seed}")]
    done = CliRunner().invoke(app, [*evaluate, "--seeds", "3,4"])
    assert done.exit_code == 0, done.output
    (row,) = [e for e in collect_entries(results, None) if e.method == "lincir"]
    assert row.seeds == (3, 4) and len(row.members) == 2
    no_template = CliRunner().invoke(app, [*evaluate[:-1], str(out / "seed-3"), "--seeds", "3,4"])
    assert no_template.exit_code == 2 and "{seed}" in no_template.output
