"""Guarantee 3 (finite numbers) and the weight-loading part of guarantee 6 (library errors become one line).

Known answers: a NaN or infinite weight, feature, score, loss or parameter is exit 2 and one line naming the
component and its file; a weight file that a library cannot read is one line naming the file and what was expected;
no training checkpoint ever holds a non-finite value.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import zipfile

import numpy as np
import pytest
import torch
from fault_support import one_line_error, run
from lincir_support import tiny_config, write_corpus
from safetensors.torch import load_file

from cirbench.errors import BackboneError, MethodError, NonFiniteError
from cirbench.features import FeatureSet
from cirbench.finite import LossWatch, require_finite_array, require_finite_features, require_finite_state_dict
from cirbench.phi import Phi, save_official, save_safetensors
from cirbench.retrieval import topk_chunked, topk_scored

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = "cirbench-tiny:random"


def evaluate(root, results, *args):
    args = (*args, "--json")  # no status line before the models load: an error is the only line
    return run("eval", "--benchmark", "cirr", "--root", root, "--results-dir", results, "--device", "cpu", *args)


def error_after_progress(out, *fragments: str) -> None:
    """Exit 2, no traceback, and exactly one ``error:`` line holding ``fragments`` (progress lines from the
    encoding that ran before the fault may precede it)."""
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output, out.output
    errors = [line for line in out.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and out.output.strip().endswith(errors[0]), out.output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def tiny_phi(backbone) -> Phi:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Phi.for_backbone(backbone.embed_dim, backbone.token_dim)


def filled(phi: Phi, value: float) -> Phi:
    with torch.no_grad():
        for p in phi.parameters():
            p.fill_(value)
    return phi


def tiny_state_dict() -> dict[str, torch.Tensor]:
    import open_clip

    from cirbench.backbones import register_configs

    register_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return open_clip.create_model("cirbench-tiny").state_dict()


# --- weights -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_non_finite_phi_is_refused_naming_phi_and_its_file(tmp_path, cirr_split, tiny_backbone, value, suffix):
    phi = filled(tiny_phi(tiny_backbone), value)
    path = tmp_path / f"phi{suffix}"
    if suffix == ".pt":
        save_official(phi, path)
    else:
        save_safetensors(phi, path, TINY, step=1)
    out = evaluate(cirr_split, tmp_path / "r", "-m", "lincir", "-c", path, "-b", TINY)
    one_line_error(out, "LinCIR phi weights", str(path), "NaN or infinite")
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("*.json"))


def test_a_backbone_with_one_nan_weight_is_refused_naming_the_backbone(tmp_path, cirr_split):
    state = tiny_state_dict()
    state["visual.conv1.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "tiny.pt"
    torch.save(state, path)
    out = evaluate(cirr_split, tmp_path / "r", "-m", "image-only", "-b", f"cirbench-tiny:{path}", "--no-quick-gelu")
    one_line_error(out, "backbone cirbench-tiny weights", str(path), "visual.conv1.weight has 1 of")


def test_a_shapes_backbone_with_an_inf_weight_is_refused(tmp_path):
    from cirbench.shapes.backbone import ASSET_DIR, WEIGHTS_FILE, load_model

    folder = tmp_path / "shapes"
    shutil.copytree(ASSET_DIR, folder)
    assert load_model(folder)[0] is not None  # the copy loads: its causal mask's -inf is no fault
    state = load_file(str(folder / WEIGHTS_FILE))
    state["ln_final.weight"] = state["ln_final.weight"].clone()
    state["ln_final.weight"][3] = float("inf")
    from safetensors.torch import save_file

    save_file(state, str(folder / WEIGHTS_FILE))
    with pytest.raises(NonFiniteError, match=r"backbone shapes-clip weights \(from .*model.safetensors\).*ln_final"):
        load_model(folder)


def test_released_searle_and_pic2word_checkpoints_with_nan_are_refused(tmp_path):
    from cirbench.methods.pic2word import read_img2text
    from cirbench.methods.searle import read_phi

    phi = filled(Phi(8, 32, 16), float("nan"))
    torch.save({"Phi": phi.state_dict()}, tmp_path / "searle.pt")
    with pytest.raises(
        NonFiniteError, match=r"SEARLE phi weights \(from .*searle.pt\).*layers.0.weight has 256 of 256"
    ):
        read_phi(tmp_path / "searle.pt")
    mapper = {"layers.0.0.weight": torch.zeros(4, 8), "layers.0.0.bias": torch.full((4,), float("-inf"))}
    torch.save({"state_dict_img2text": mapper}, tmp_path / "p2w.pt")
    with pytest.raises(NonFiniteError, match=r"Pic2Word IM2TEXT weights \(from .*p2w.pt\).*layers.0.0.bias"):
        read_img2text(tmp_path / "p2w.pt")


def _foreign_zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")


BAD_FILES = {
    "random bytes": lambda p: p.write_bytes(os.urandom(4096)),
    "empty": lambda p: p.write_bytes(b""),
    "zip not torch's": _foreign_zip,
}


@pytest.mark.parametrize("kind", [*BAD_FILES, "wrong width"])
def test_backbone_files_that_do_not_load_are_one_line(tmp_path, cirr_split, kind):
    path = tmp_path / "weights.pt"
    if kind == "wrong width":  # open_clip raises AssertionError ("text pos_embed width changed!")
        from cirbench.shapes.backbone import create_model

        torch.save(create_model().state_dict(), path)
    else:
        BAD_FILES[kind](path)
    out = evaluate(cirr_split, tmp_path / "r", "-m", "image-only", "-b", f"cirbench-tiny:{path}", "--no-quick-gelu")
    one_line_error(out, f"cannot load cirbench-tiny weights from {path}", "expected cirbench-tiny (embed dim 32")


@pytest.mark.parametrize("kind", [*BAD_FILES, "wrong width"])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_phi_files_that_do_not_load_are_one_line(tmp_path, cirr_split, tiny_backbone, kind, suffix):
    path = tmp_path / f"phi{suffix}"
    if kind == "wrong width":
        wide = Phi(tiny_backbone.embed_dim, 64, 2 * tiny_backbone.token_dim)
        save_official(wide, path) if suffix == ".pt" else save_safetensors(wide, path, TINY, step=1)
        expected = "this checkpoint was trained for another backbone"
    else:
        BAD_FILES[kind](path)
        expected = f"cannot read a LinCIR phi from {path}"
    out = evaluate(cirr_split, tmp_path / "r", "-m", "lincir", "-c", path, "-b", TINY)
    one_line_error(out, expected)


def test_a_phi_state_dict_that_is_not_a_matrix_is_one_line(tmp_path, tiny_backbone):
    from cirbench.phi import load_phi

    torch.save({"Phi": {"layers.0.weight": torch.zeros(3), "layers.6.weight": torch.zeros(3)}}, tmp_path / "v.pt")
    with pytest.raises(MethodError, match="layers.0.weight is a 1-d tensor, not a matrix"):
        load_phi(tmp_path / "v.pt")
    torch.save({"Phi": {"layers.0.weight": torch.zeros(4, 2), "layers.6.weight": 5}}, tmp_path / "i.pt")
    with pytest.raises(MethodError, match="hold no tensor"):
        load_phi(tmp_path / "i.pt")


def test_backbone_errors_are_backbone_errors():
    assert issubclass(NonFiniteError, ValueError) and issubclass(BackboneError, RuntimeError)


# --- features and scores -----------------------------------------------------------------------------------------
def test_nan_query_features_are_one_line_naming_the_method(tmp_path, cirr_split, monkeypatch):
    from cirbench.backbones import Backbone

    clean = Backbone.encode_text
    monkeypatch.setattr(Backbone, "encode_text", lambda self, texts: clean(self, texts) * float("nan"))
    out = evaluate(cirr_split, tmp_path / "r", "-m", "text-only", "-b", TINY)
    error_after_progress(out, "query features of method text-only on cirr/val", "NaN or infinite")


def test_nan_fused_scores_are_one_line_naming_the_method(tmp_path, cirr_split, monkeypatch):
    from cirbench.methods.fusion import WeightedSum

    monkeypatch.setattr(WeightedSum, "fuse", lambda self, a, b: a + b * float("nan"))
    out = evaluate(cirr_split, tmp_path / "r", "-m", "fusion-sum", "-b", TINY)
    error_after_progress(out, "fused scores of method fusion-sum on cirr/val")


def test_nan_image_features_are_refused_fresh_and_from_the_cache(tmp_path, cirr_split, monkeypatch):
    from cirbench.backbones import Backbone

    clean = Backbone.encode_image
    monkeypatch.setattr(Backbone, "encode_image", lambda self, pixels: clean(self, pixels) * float("nan"))
    out = evaluate(cirr_split, tmp_path / "r1", "-m", "image-only", "-b", TINY)
    error_after_progress(out, f"image features of backbone {TINY} hold NaN", "check its weights")
    monkeypatch.setattr(Backbone, "encode_image", clean)
    # nothing non-finite was cached: the next run encodes again and succeeds
    assert evaluate(cirr_split, tmp_path / "r2", "-m", "image-only", "-b", TINY).exit_code == 0
    # a cache entry holding NaN (written with a valid digest, as no cirbench write can) is named with its fix
    cached = FeatureSet(["a"], np.full((1, 4), np.nan, np.float32), 0.0, from_cache=True)
    with pytest.raises(NonFiniteError, match="from the feature cache.*cirbench cache clear"):
        require_finite_features(cached, TINY)


def test_scores_are_checked_before_ranking_and_the_masked_reference_is_no_fault():
    queries = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    gallery = torch.nn.functional.normalize(torch.randn(7, 8), dim=-1)
    idx, _ = topk_chunked(queries, gallery, 3, exclude=[0, 1, None, 3, 4], chunk_size=2)
    assert idx.shape == (5, 3) and 0 not in idx[0].tolist()
    bad = queries.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(NonFiniteError, match="ranking scores hold NaN"):
        topk_chunked(bad, gallery, 3, chunk_size=2)
    with pytest.raises(NonFiniteError, match="fused scores of X"):
        topk_scored(lambda a, b: (queries[a:b] @ gallery.T).log(), 5, 7, 3, what="fused scores of X")


def test_a_large_array_is_checked_in_slices_and_the_first_bad_row_named(tmp_path, monkeypatch):
    import cirbench.finite

    monkeypatch.setattr(cirbench.finite, "NUMPY_ROWS", 4)
    array = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float32, shape=(10, 3))
    array[:] = 1.0
    require_finite_array(array, "features")
    array[9, 1] = np.inf
    with pytest.raises(NonFiniteError, match=r"features \(from f.npy\) hold NaN or infinite values: row 9"):
        require_finite_array(array, "features", "f.npy")
    require_finite_state_dict({"epoch": 3, "w": torch.ones(2), "ids": torch.arange(3)}, "phi")
    require_finite_state_dict({"big": torch.full((10,), 3e38)}, "phi")  # its sum overflows: no false alarm
    with pytest.raises(NonFiniteError, match=r"phi \(from x.pt\) hold NaN or infinite values: b has 1 of 2"):
        require_finite_state_dict({"a": torch.ones(2), "b": torch.tensor([float("-inf"), 1.0])}, "phi", "x.pt")


# --- training ----------------------------------------------------------------------------------------------------
def _saved_phis_are_finite(out) -> int:
    files = [*out.rglob("phi_*.safetensors")]
    for path in files:
        assert all(torch.isfinite(t).all() for t in load_file(str(path)).values()), path
    if (out / "state.pt").is_file():
        state = torch.load(out / "state.pt", weights_only=True)
        assert all(torch.isfinite(t).all() for t in state["phi"].values())
    return len(files)


@pytest.mark.parametrize(("host_sync", "every"), [("step", 1), ("log", 1), ("log", 4)])
def test_a_diverging_run_stops_naming_the_step_and_writes_no_nan(tmp_path, host_sync, every):
    """lr 1e30: step 1's update is huge but finite, step 2's loss is not. With ``host_sync=log`` and checkpoints
    every 4 steps the host first looks at step 4, and still names step 2."""
    corpus = write_corpus(tmp_path)
    out = tmp_path / "run"
    args = ["train", "lincir", "-b", TINY, "--corpus", corpus, "--out", out, "--steps", 6, "--global-batch", 8]
    args += ["--checkpoint-every", every, "--lr", "1e30", "--threads", 1, "--set", f"log_every={every}"]
    result = run(*args, "--set", f"host_sync={host_sync}", "--quiet")
    one_line_error(result, "training loss at step 2 of run", str(out), "lower --lr (now 1e+30)")
    assert _saved_phis_are_finite(out) == (2 if every == 1 else 0)  # step 1's phi_last and checkpoint, or none
    assert not (out / "checkpoints" / "phi_000000002.safetensors").exists()


def test_a_resumed_phi_that_is_not_finite_is_refused(tmp_path, monkeypatch):
    from cirbench.lincir import rundir
    from cirbench.lincir.trainer import train

    out = tmp_path / "run"
    config = tiny_config(write_corpus(tmp_path), out, steps=2, checkpoint_every=2)
    train(config)
    load_state = rundir.load_state

    def damaged(trainer):  # what a state.pt with NaN weights (written by another tool) gives back
        found = load_state(trainer)
        filled(trainer.phi, float("nan"))
        return found

    monkeypatch.setattr(rundir, "load_state", damaged)
    with pytest.raises(NonFiniteError, match=r"phi parameters resumed at step 2 \(from .*state.pt\) hold NaN"):
        train(dataclasses.replace(config, steps=4), resume=True)


def test_non_finite_parameters_after_a_step_are_refused_and_never_saved(tmp_path, monkeypatch):
    from cirbench.lincir.trainer import Trainer, train

    original = Trainer.step

    def step(self, index, inputs=None):
        loss = original(self, index, inputs)
        if index == 2:  # the update of step 3 leaves one weight infinite; its loss was finite
            with torch.no_grad():
                self.phi.layers[3].weight[0, 0] = float("inf")
        return loss

    monkeypatch.setattr(Trainer, "step", step)
    out = tmp_path / "run"
    config = tiny_config(write_corpus(tmp_path), out, steps=6, checkpoint_every=1, log_every=3, host_sync="log")
    with pytest.raises(NonFiniteError, match=r"phi parameters after step 3 of run .*run hold NaN or infinite"):
        train(config)
    assert _saved_phis_are_finite(out) >= 1  # steps 1 and 2 were saved, finite
    assert (out / "checkpoints" / "phi_000000002.safetensors").is_file()
    assert not (out / "checkpoints" / "phi_000000003.safetensors").exists()


def test_the_loss_watch_names_the_first_bad_step_only_when_read():
    watch = LossWatch("cpu", "runs/x")
    for step, value in enumerate([1.0, 0.5, float("nan"), float("inf"), 0.2], start=1):
        watch.record(torch.tensor(value), step)
    with pytest.raises(NonFiniteError, match=r"training loss at step 3 of run runs/x is NaN or infinite"):
        watch.verify(5)
    fine = LossWatch("cpu")
    fine.record(torch.tensor(0.1), 1)
    fine.verify(1, [torch.ones(3)])
    with pytest.raises(NonFiniteError, match="phi parameters after step 1 hold"):
        fine.verify(1, [torch.tensor([1.0, float("nan")])])


def test_the_score_flag_is_exact_on_the_cpu_fast_path():
    """The CPU path proves finiteness by an fp32 sum; a sum that overflows on finite values is no fault, while one
    NaN, one infinity or opposite infinities (whose sum is NaN) are found."""
    from cirbench.finite import FiniteFlag

    def ok(x: torch.Tensor) -> bool:
        flag = FiniteFlag()
        flag.add(x)
        return flag.ok

    assert ok(torch.full((4, 4), 3e38)) and ok(torch.zeros(0, 3))
    for value in (float("nan"), float("inf"), -float("inf")):
        x = torch.zeros(4, 4)
        x[1, 2] = value
        assert not ok(x)
    x = torch.zeros(4, 4)
    x[0, 0], x[0, 1] = float("inf"), -float("inf")
    assert not ok(x)
