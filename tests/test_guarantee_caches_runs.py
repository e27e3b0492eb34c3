"""Issue 19, integrity of caches and run folders, and one writer per run folder.

Everything cirbench writes and reads back (gallery feature cache, LinCIR mask and target caches, training run
folders) is checked against the sha256 recorded when it was written: a damaged or edited cache is built again with
a one-line note and the same numbers; a damaged or edited run file is a one-line ``IntegrityError``. Older folders
without digests keep working (legacy). A second ``train lincir`` into a folder being written is refused in one line.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fault_support import one_line_error, run
from filelock import FileLock
from lincir_support import tiny_config, write_corpus
from PIL import Image

import cirbench.features as features
from cirbench.benchmarks.base import ImageRef
from cirbench.errors import IntegrityError
from cirbench.features import encode_images, list_entries

ROOT = Path(__file__).resolve().parents[1]


def _flip(path: Path, offset: int = -5) -> None:
    """One bit changed inside the file, size kept (a disk fault or a hand edit, not a truncation)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _images(folder: Path, n: int) -> list[ImageRef]:
    folder.mkdir(parents=True, exist_ok=True)
    refs = []
    for i in range(n):
        Image.new("RGB", (32, 28), (30 * i, 200 - 20 * i, 77)).save(folder / f"{i}.png")
        refs.append(ImageRef(str(i), folder / f"{i}.png"))
    return refs


# --------------------------------------------------------------------------------------------- feature cache


def test_feature_cache_content_edits_are_found_and_encoded_again(tmp_path, tiny_backbone, monkeypatch, caplog):
    monkeypatch.setattr(features, "CHUNK", 2)
    refs = _images(tmp_path / "img", 5)
    clean = encode_images(tiny_backbone, refs, use_cache=False).features
    assert not encode_images(tiny_backbone, refs).from_cache
    (folder,) = (features.cache_root() / "features").iterdir()
    cases = {
        "a flipped bit in features.npy": lambda: _flip(folder / "features.npy"),
        "an edited manifest": lambda: (folder / "manifest.json").write_text(
            (folder / "manifest.json")
            .read_text()
            .replace('"n_images": 5', '"n_images": 5 ')
            .replace('"preprocess": "clip"', '"preprocess": "clip2"')
        ),
        "a legacy entry (no digest)": lambda: (folder / "manifest.json").write_text(
            json.dumps({k: v for k, v in json.loads((folder / "manifest.json").read_text()).items() if k != "digest"})
        ),
    }
    for case, damage in cases.items():
        assert encode_images(tiny_backbone, refs).from_cache, case
        damage()
        caplog.clear()
        with caplog.at_level("WARNING", logger="cirbench"):
            again = encode_images(tiny_backbone, refs)
        notes = [r.getMessage() for r in caplog.records]
        assert not again.from_cache and len(notes) == 1 and "encoding it again" in notes[0], (case, notes)
        np.testing.assert_array_equal(again.features, clean)
    # a chunk left by an interrupted run: a flipped bit, or no digest beside it, is encoded again
    real = features._finish
    monkeypatch.setattr(features, "_finish", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    for path in folder.glob("*.npy"):
        path.unlink()
    with pytest.raises(KeyboardInterrupt):
        encode_images(tiny_backbone, refs)
    monkeypatch.setattr(features, "_finish", real)
    _flip(folder / "chunk_000000.npy")
    (folder / "digest_000001.txt").unlink()
    caplog.clear()
    with caplog.at_level("WARNING", logger="cirbench"):
        resumed = encode_images(tiny_backbone, refs)
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 2 and "chunk_000000.npy" in notes[0] and "damaged" in notes[0], notes
    assert "chunk_000001.npy has no recorded digest" in notes[1]
    np.testing.assert_array_equal(resumed.features, clean)
    assert [e["complete"] for e in list_entries()] == [True] and not list(folder.glob("digest_*"))


def test_an_evaluation_on_a_bit_flipped_cache_gives_the_clean_numbers(tmp_path, cirr_split):
    from cirbench.results import iter_results

    def eval_cirr(results: Path, *extra):
        args = ["eval", "-m", "image+text", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--root", cirr_split]
        return run(*args, "--results-dir", results, "--device", "cpu", *extra)

    assert eval_cirr(tmp_path / "clean", "--no-cache").exit_code == 0
    assert eval_cirr(tmp_path / "r1").exit_code == 0
    (final,) = (Path(os.environ["CIRBENCH_CACHE"]) / "features").glob("*/features.npy")
    _flip(final, offset=200)  # a feature value, not the header
    assert eval_cirr(tmp_path / "r2").exit_code == 0
    metrics = [next(iter_results(tmp_path / d)).metrics for d in ("clean", "r1", "r2")]
    assert metrics[0] == metrics[1] == metrics[2]


# --------------------------------------------------------------------------------------------- mask cache


def test_mask_cache_damage_is_rebuilt_or_refused(tmp_path, caplog):
    from cirbench.lincir.corpus import load_corpus
    from cirbench.lincir.maskcache import MaskCache, build_mask_cache

    corpus = load_corpus([str(write_corpus(tmp_path))])
    cache = build_mask_cache(corpus)
    want = np.array(cache.masked_ids)
    _flip(cache.path / "masked_ids.npy")
    with caplog.at_level("WARNING", logger="cirbench"):
        rebuilt = build_mask_cache(corpus)
    assert rebuilt.path == cache.path and np.array_equal(np.array(rebuilt.masked_ids), want)
    assert any("is damaged" in r.getMessage() and "building it again" in r.getMessage() for r in caplog.records)
    _flip(cache.path / "orig_ids.npy")  # a prepared --masks folder cannot be rebuilt here: refused, named
    out = run(
        "train", "lincir", "-b", "cirbench-tiny:random", "--masks", cache.path, "--out", tmp_path / "r", "--quiet"
    )
    one_line_error(out, "orig_ids.npy", "does not match its recorded sha256", "cirbench lincir prepare")
    with pytest.raises(IntegrityError, match="meta.json: content does not match its digest"):
        meta = json.loads((cache.path / "meta.json").read_text())
        (cache.path / "meta.json").write_text(json.dumps({**meta, "mode": "whole-word"}))
        MaskCache(cache.path)


# --------------------------------------------------------------------------------------------- run folders


def _run(tmp_path: Path, name: str, **overrides):
    from cirbench.lincir.trainer import train

    corpus = tmp_path / "corpus" / "captions.txt"
    if not corpus.exists():
        corpus.parent.mkdir()
        write_corpus(corpus.parent)
    cfg = tiny_config(corpus, tmp_path / name, **{"steps": 6, "checkpoint_every": 2, **overrides})
    return cfg, train


def _phi(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "phi_last.safetensors"))


def test_damaged_or_edited_run_files_are_one_line(tmp_path):
    from cirbench.methods.lincir import resolve_checkpoint

    cfg, train = _run(tmp_path, "run", steps=4, keep_checkpoints=True)
    train(cfg)
    out = Path(cfg.out)
    record = json.loads((out / "run_digests.json").read_text())["files"]
    assert {"config.json", "state.pt", "train_meta.json", "phi_last.safetensors"} <= set(record)
    assert all(len(v) == 1 for v in record.values())  # settled: one digest per file
    resume = ("train", "lincir", "--resume", out, "--steps", 6, "--quiet")
    for name, fragment in [
        ("state.pt", "state.pt is damaged or was edited"),
        ("config.json", "config.json is damaged or was edited"),
    ]:
        saved = (out / name).read_bytes()
        if name == "config.json":
            (out / name).write_text((out / name).read_text().replace('"threads": 1', '"threads": 2'))
        else:
            _flip(out / name)
        one_line_error(run(*resume), fragment, "--overwrite")
        (out / name).write_bytes(saved)
    for name in ("phi_last.safetensors", "train_meta.json", "checkpoints/phi_000000004.safetensors"):
        saved = (out / name).read_bytes()
        _flip(out / name, offset=-3 if name.endswith(".json") else -5)
        target = out / name if name.startswith("checkpoints") else out
        with pytest.raises(IntegrityError, match=f"{Path(name).name} is damaged or was edited"):
            resolve_checkpoint(target)
        (out / name).write_bytes(saved)
    _flip(out / "phi_last.safetensors")
    one_line_error(run("lincir", "convert", out, tmp_path / "x.pt"), "phi_last.safetensors is damaged")
    (out / "run_digests.json").unlink()
    one_line_error(run(*resume), "run_digests.json is missing", "train_meta.json")
    with pytest.raises(IntegrityError, match="run_digests.json is missing"):
        resolve_checkpoint(out)


def test_a_legacy_run_folder_resumes_bit_exactly(tmp_path, caplog):
    cfg, train = _run(tmp_path, "clean")
    train(cfg)
    part, _ = _run(tmp_path, "part")
    assert train(part, stop_after=3).step == 3
    out = Path(part.out)
    (out / "run_digests.json").unlink()  # as an older cirbench wrote it: no record, no seal in the state
    meta = json.loads((out / "train_meta.json").read_text())
    (out / "train_meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "digests"}))
    state = torch.load(out / "state.pt", weights_only=True)
    state.pop("target_cache")
    torch.save(state, out / "state.pt")
    with caplog.at_level("WARNING"):
        resumed = train(part, resume=True)
    assert resumed.step == 6 and any("legacy" in r.getMessage() for r in caplog.records)
    a, b = _phi(Path(cfg.out)), _phi(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (out / "run_digests.json").exists() or json.loads((out / "run_digests.json").read_text())["files"]


def test_target_cache_is_restored_to_its_checkpoint_or_started_again(tmp_path, caplog):
    from cirbench.lincir.targets import TargetCache

    cache = TargetCache(tmp_path / "t", n=6, dim=3, dtype=torch.float16, key="k", create=True)
    rows = torch.arange(18, dtype=torch.float32).reshape(6, 3)
    cache.get(np.array([0, 2]), lambda pos: rows[[0, 2]][pos], torch.device("cpu"))
    sealed = cache.seal()
    cache.get(np.array([4]), lambda pos: rows[[4]][pos], torch.device("cpu"))  # after the checkpoint
    assert cache.restore(sealed) and list(cache.filled) == [1, 0, 1, 0, 0, 0]
    cache.values[2, 1] = 99  # an edit of a sealed row
    with caplog.at_level("WARNING", logger="cirbench"):
        assert not cache.restore(sealed)
    assert list(cache.filled) == [0] * 6 and "computing its targets again" in caplog.records[-1].getMessage()
    # end to end: a resume over a damaged target cache trains the same phi as an uninterrupted run
    cfg, train = _run(tmp_path, "clean", steps=8)
    train(cfg)
    part, _ = _run(tmp_path, "part", steps=8)
    train(part, stop_after=5)  # epoch 2 (3 steps per epoch) reads cached targets
    _flip(Path(part.out) / "target_cache" / "values.bin", offset=7)
    assert train(part, resume=True).step == 8
    a, b = _phi(Path(cfg.out)), _phi(Path(part.out))
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)  # recomputed in other batches: rounding


def test_a_failed_checkpoint_write_leaves_a_folder_that_resumes(tmp_path, monkeypatch):
    """A full disk while ``state.pt`` is replaced: the old file stays, is still accepted, and the run resumes."""
    import cirbench.run_digests as run_digests

    cfg, train = _run(tmp_path, "run", steps=4)
    train(cfg)
    real = run_digests.atomic_write

    def full(path, data):
        if Path(path).name == "state.pt":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(run_digests, "atomic_write", full)
    with pytest.raises(OSError, match="No space left"):
        train(cfg.__class__.from_dict({**cfg.to_dict(), "steps": 6}), resume=True)
    monkeypatch.setattr(run_digests, "atomic_write", real)
    assert len(json.loads((Path(cfg.out) / "run_digests.json").read_text())["files"]["state.pt"]) == 2
    assert train(cfg.__class__.from_dict({**cfg.to_dict(), "steps": 6}), resume=True).step == 6


# --------------------------------------------------------------------------------------------- one writer


def test_a_second_writer_of_a_run_folder_is_refused(tmp_path):
    corpus = write_corpus(tmp_path)
    out = tmp_path / "run"
    args = ["train", "lincir", "-b", "cirbench-tiny:random", "--corpus", str(corpus), "--out", str(out)]
    args += ["--global-batch", "8", "--steps", "100000", "--checkpoint-every", "2", "--device", "cpu", "--quiet"]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    first = subprocess.Popen([sys.executable, "-m", "cirbench", *args], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "state.pt").exists():
            assert first.poll() is None and time.time() < deadline, first.stderr.read()[-2000:]
            time.sleep(0.05)
        busy = "is being written by another training process"
        one_line_error(run(*args, "--overwrite"), busy, str(out), "another --out")
        one_line_error(run("train", "lincir", "--resume", out, "--quiet"), busy)
        assert first.poll() is None and (out / "state.pt").exists()  # the first run was not touched
    finally:
        first.kill()
        first.wait(timeout=60)
    FileLock(out / ".writer.lock", timeout=0).acquire()  # a killed writer holds nothing
