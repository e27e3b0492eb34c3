"""Nothing silent: every bad input is a one-line error naming the file or value (or a result equal to the clean
run's), and runs killed with SIGKILL resume to bit-identical results. docs/RELIABILITY.md lists these cases."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fault_support import one_line_error, run
from PIL import Image

from cirbench.io import read_json
from cirbench.results import iter_results, rankings_path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


def eval_cirr(root: Path, results: Path, *extra):
    args = ["eval", "-m", "image+text", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--root", root]
    return run(*args, "--results-dir", results, "--device", "cpu", *extra)


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------------------------- annotations

CAPTIONS = "cirr/captions/cap.rc2.val.json"
SPLIT = "cirr/image_splits/split.rc2.val.json"


def _set(index: int, name: str, value):
    return lambda records: records[index].__setitem__(name, value)


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        (CAPTIONS, _set(1, "pairid", 100), "record 1: pairid 100 is also the pairid of record 0"),
        (CAPTIONS, _set(0, "pairid", [1, 2]), "record 0: field 'pairid' must be an integer, got list [1, 2]"),
        (CAPTIONS, _set(0, "pairid", {"a": 1}), "record 0: field 'pairid' must be an integer, got dict"),
        (CAPTIONS, _set(2, "caption", None), "record 2: field 'caption' must be a string, got NoneType null"),
        (CAPTIONS, _set(0, "reference", ["dev-0-0-img0"]), "record 0: field 'reference' must be a string"),
        (CAPTIONS, _set(0, "target_soft", {"dev-2-0-img0": "high"}), "'target_soft' values must be numbers"),
        (CAPTIONS, lambda r: r.clear(), "no query to evaluate"),
        (SPLIT, lambda s: s.__setitem__("dev-0-0-img0", "../../x.png"), "'../../x.png' leaves the data root"),
        (SPLIT, lambda s: s.__setitem__("dev-0-0-img0", "/etc/passwd"), "'/etc/passwd' is an absolute path"),
        (SPLIT, lambda s: s.__setitem__("dev-0-0-img0", 7), "the path must be a string, got 7"),
    ],
)
def test_bad_cirr_annotations_are_refused_everywhere(tmp_path, cirr_split, file, change, message):
    _edit(cirr_split / file, change)
    one_line_error(eval_cirr(cirr_split, tmp_path / "r"), message)
    assert not (tmp_path / "r").exists()
    if "no query" not in message:
        check = run("data", "check", "--benchmark", "cirr", "--root", cirr_split, "--json")
        assert check.exit_code == 1 and message in json.loads(check.output)["problems"][0]
        (tmp_path / "rank.json").write_text(json.dumps({"100": []}))
        scored = run("score", "--benchmark", "cirr", "--root", cirr_split, "--rankings", tmp_path / "rank.json")
        one_line_error(scored, message)


def test_a_key_twice_in_a_json_object_is_refused(tmp_path, cirr_split):
    path = cirr_split / SPLIT
    text = path.read_text()
    path.write_text(text[:-1] + ', "dev-0-0-img0": "./dev/dev-1-0-img1.png"}')
    one_line_error(eval_cirr(cirr_split, tmp_path / "r"), "the key 'dev-0-0-img0' appears twice in one object")


def test_circo_and_fashioniq_paths_and_ids_are_strict(tmp_path):
    circo = tmp_path / "CIRCO"
    shutil.copytree(FIXTURES / "circo", circo)
    info = circo / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"images": [{"id": 7, "file_name": "../../../etc/x.jpg"}]}))
    out = run("eval", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "circo", "--root", circo)
    one_line_error(out, "file_name '../../../etc/x.jpg' leaves the data root")
    info.write_text(json.dumps({"images": [{"id": "7", "file_name": "7.jpg"}]}))
    check = run("data", "check", "--benchmark", "circo", "--root", circo, "--json")
    assert check.exit_code == 1 and "field 'id' must be an integer" in json.loads(check.output)["problems"][0]
    out = run("eval", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "circo", "--root", circo)
    one_line_error(out, "record 0: field 'id' must be an integer, got str '7'")
    fiq = tmp_path / "FIQ"
    shutil.copytree(FIXTURES / "fashioniq", fiq)
    _edit(fiq / "captions" / "cap.dress.val.json", _set(0, "candidate", "../../B00X"))
    out = run("eval", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "fashioniq", "--root", fiq)
    one_line_error(out, "'candidate' '../../B00X' is not a plain file name")


# --------------------------------------------------------------------------------------------- images


def _break_images(root: Path) -> dict[str, Path]:
    paths = {
        "empty": root / "dev" / "dev-5-0-img1.png",
        "not_an_image": root / "dev" / "dev-6-0-img0.png",
        "truncated": root / "dev" / "dev-7-0-img1.png",
    }
    paths["empty"].write_bytes(b"")
    paths["not_an_image"].write_text("this is text")
    data = paths["truncated"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    return paths


def test_bad_image_files_are_found_named_and_skippable(tmp_path, cirr_split):
    bad = _break_images(cirr_split)
    check = run("data", "check", "--benchmark", "cirr", "--root", cirr_split, "--json")
    report = json.loads(check.output)
    assert check.exit_code == 1 and report["n_unreadable"] == 3 and report["check"] == "header"
    assert {Path(line.split(":")[0]) for line in report["unreadable_first"]} == set(bad.values())
    assert any("truncated: no end marker" in line for line in report["unreadable_first"])
    deep = json.loads(run("data", "check", "--benchmark", "cirr", "--root", cirr_split, "--deep", "--json").output)
    assert deep["n_unreadable"] == 3 and any(str(bad["truncated"]) in line for line in deep["unreadable_first"])
    one_line_error(eval_cirr(cirr_split, tmp_path / "r"), "1 of 12 images unreadable", "empty file", "--skip-missing")
    bad["empty"].unlink()
    one_line_error(eval_cirr(cirr_split, tmp_path / "r"), "1 of 12 images missing")
    # --skip-missing leaves out the missing, the non-image and the truncated file (no end marker), and counts them.
    out = eval_cirr(cirr_split, tmp_path / "r", "--skip-missing")
    assert out.exit_code == 0, out.output
    (result,) = iter_results(tmp_path / "r")
    assert (result.skipped.images_missing, result.skipped.images_unreadable) == (1, 2)
    assert result.key_fields["missing_images"] is not None


# --------------------------------------------------------------------------------------------- cards, flags


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ("name: [unclosed\n", "cannot read card"),
        ("name: x\nmethod: !!python/object/apply:os.system ['echo owned']\n", "cannot read card"),
        ("name: x\nmethod: image-only\nbenchmarks: 5\n", "field 'benchmarks'"),
        ("name: x\nmethod: image-only\noptions: [a, b]\n", "field 'options'"),
        ("- a list\n", "is not a YAML mapping"),
    ],
)
def test_bad_cards_are_one_line(tmp_path, card, message):
    (tmp_path / "methods").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "methods" / "bad.yaml").write_text(card)
    (tmp_path / "benchmarks" / "shapes.yaml").write_text("name: s\nbenchmark: shapes\nsplit: test\n")
    out = run("eval", "--all", "--methods-dir", tmp_path / "methods", "--benchmarks-dir", tmp_path / "benchmarks")
    one_line_error(out, "bad.yaml", message)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-p", "remove_reference=!!python/object/apply:os.system ['echo owned']"], "remove_reference="),
        (["-o", "fiq_join=[both-orders"], "fiq_join='[both-orders' is not valid"),
    ],
)
def test_yaml_in_flags_is_never_evaluated(tmp_path, cirr_split, flags, message):
    one_line_error(eval_cirr(cirr_split, tmp_path / "r", *flags), message)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("lr=!!python/object/apply:os.system ['echo owned']", "is not valid YAML"),
        ("steps=abc", "training option steps='abc' is not valid; expected int"),
        ("seed=1.5", "training option seed=1.5 is not valid; expected int"),
        ("pack=maybe", "training option pack='maybe' is not valid; expected bool"),
    ],
)
def test_bad_training_settings_are_one_line(tmp_path, setting, message):
    (tmp_path / "c.txt").write_text("a red dog\n" * 20)
    out = run(
        "train",
        "lincir",
        "-b",
        "cirbench-tiny:random",
        "--corpus",
        tmp_path / "c.txt",
        "--out",
        tmp_path / "run",
        "--set",
        setting,
        "--quiet",
    )
    one_line_error(out, message)


# --------------------------------------------------------------------------------------------- results


def test_results_folder_problems_are_found_before_any_work(tmp_path, cirr_split):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = eval_cirr(cirr_split, blocker / "results")
    one_line_error(out, f"cannot write results under {blocker / 'results'}")
    assert not (Path(os.environ["CIRBENCH_CACHE"]) / "features").exists()  # nothing was encoded first


def test_a_corrupt_cached_entry_is_rebuilt_and_the_numbers_stay(tmp_path, cirr_split):
    clean = eval_cirr(cirr_split, tmp_path / "clean", "--no-cache")
    assert eval_cirr(cirr_split, tmp_path / "r1").exit_code == 0
    (final,) = (Path(os.environ["CIRBENCH_CACHE"]) / "features").glob("*/features.npy")
    final.write_bytes(final.read_bytes()[:100])
    assert eval_cirr(cirr_split, tmp_path / "r2").exit_code == 0
    metrics = [next(iter_results(tmp_path / d)).metrics for d in ("clean", "r1", "r2")]
    assert clean.exit_code == 0 and metrics[0] == metrics[1] == metrics[2]


def test_two_evaluations_finishing_one_cache_entry_agree(tmp_path, tiny_backbone):
    from cirbench.benchmarks.base import ImageRef
    from cirbench.features import encode_images, list_entries

    refs = []
    for i in range(6):
        Image.new("RGB", (30, 30), (40 * i, 3 * i, 90)).save(tmp_path / f"{i}.png")
        refs.append(ImageRef(str(i), tmp_path / f"{i}.png"))
    out: list = []
    threads = [threading.Thread(target=lambda: out.append(encode_images(tiny_backbone, refs))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(out) == 2 and np.array_equal(np.asarray(out[0].features), np.asarray(out[1].features))
    assert [e["complete"] for e in list_entries()] == [True]
    np.testing.assert_array_equal(encode_images(tiny_backbone, refs).features, out[0].features)


def test_submit_refuses_a_circo_run_without_the_reference(tmp_path):
    from cirbench.benchmarks import get_benchmark
    from cirbench.errors import SubmissionError
    from cirbench.results import RunResult
    from cirbench.submission import check_run

    result = RunResult.model_validate(
        {
            "run_key": "abc",
            "key_fields": {},
            "created_at": "now",
            "method": {"name": "x"},
            "backbone": {"id": "b", "weights_id": "w"},
            "benchmark": {"name": "circo", "split": "test", "options": {"remove_reference": True}},
        }
    )
    with pytest.raises(SubmissionError, match="remove_reference=True; the CIRCO server protocol expects"):
        check_run(result, get_benchmark("circo"))


# --------------------------------------------------------------------------------------------- training


def _corpus(tmp_path: Path) -> Path:
    words = ["red", "blue", "small", "large", "dog", "cat", "car", "tree", "left", "right"]
    lines = [f"a {words[i % 10]} {words[(i * 3) % 10]} next to a {words[(i * 7) % 10]}" for i in range(64)]
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "c.txt"


def _train_args(corpus: Path, out: Path, steps: int = 6) -> list:
    return [
        "train",
        "lincir",
        "-b",
        "cirbench-tiny:random",
        "--corpus",
        corpus,
        "--out",
        out,
        "--steps",
        steps,
        "--global-batch",
        8,
        "--checkpoint-every",
        2,
        "--device",
        "cpu",
        "--threads",
        1,
        "--quiet",
    ]


def test_an_existing_run_is_never_overwritten_by_accident(tmp_path):
    corpus, out = _corpus(tmp_path), tmp_path / "run"
    assert run(*_train_args(corpus, out, steps=6)).exit_code == 0
    assert (out / "checkpoints" / "phi_000000006.safetensors").is_file()
    (out / "notes.txt").write_text("mine")
    one_line_error(run(*_train_args(corpus, out, steps=4)), "already holds a training run", "--resume", "--overwrite")
    assert run(*_train_args(corpus, out, steps=4), "--overwrite").exit_code == 0
    assert not (out / "checkpoints" / "phi_000000006.safetensors").exists()  # the old run went whole
    assert (out / "notes.txt").read_text() == "mine" and json.loads((out / "train_meta.json").read_text())["steps"] == 4
    (out / "state.pt").write_bytes((out / "state.pt").read_bytes()[:200])
    one_line_error(run("train", "lincir", "--resume", out, "--steps", 6, "--quiet"), "state.pt is damaged")


# --------------------------------------------------------------------------------------------- offline


def test_no_connection_is_attempted_when_downloads_are_off(tmp_path, cirr_split):
    """Sockets are replaced by a recorder in the child process: missing weights are a clear error, no request."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import os, socket
        def _refuse(*args, **kwargs):
            with open(os.environ["NETWORK_LOG"], "a") as log:
                log.write(repr(args[:2]) + "\\n")
            raise OSError("network blocked by the test")
        socket.socket.connect = _refuse
        socket.socket.connect_ex = _refuse
        socket.create_connection = _refuse
        socket.getaddrinfo = _refuse
    """)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "CIRBENCH_ALLOW"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]),
        NETWORK_LOG=str(tmp_path / "net.log"),
        HOME=str(tmp_path / "home"),
        XDG_CACHE_HOME=str(tmp_path / "home" / ".cache"),
    )
    cmd = [
        sys.executable,
        "-m",
        "cirbench",
        "eval",
        "-m",
        "image-only",
        "-b",
        "ViT-B-32:laion2b_s34b_b79k",
        "--benchmark",
        "cirr",
        "--root",
        str(cirr_split),
        "--results-dir",
        str(tmp_path / "r"),
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "not in the local cache" in proc.stderr and "--allow-download" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "net.log").exists(), (tmp_path / "net.log").read_text()


# --------------------------------------------------------------------------------------------- kill -9


def _wait_for(path_glob: str, folder: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not list(folder.glob(path_glob)):
        if proc.poll() is not None:
            raise AssertionError(f"finished before it could be killed: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"nothing matched {path_glob} under {folder}")
        time.sleep(0.02)


def _env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }


def test_training_killed_with_sigkill_resumes_bit_exactly(tmp_path):
    from safetensors.torch import load_file

    corpus = _corpus(tmp_path)
    clean = run(*_train_args(corpus, tmp_path / "clean", steps=60))
    assert clean.exit_code == 0, clean.output
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "cirbench", *[str(a) for a in _train_args(corpus, killed, steps=60)]]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for("checkpoints/phi_000000004.safetensors", killed, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    resumed = run("train", "lincir", "--resume", killed, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    a, b = load_file(str(tmp_path / "clean" / "phi_last.safetensors")), load_file(str(killed / "phi_last.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_gallery_encoding_killed_with_sigkill_resumes_to_the_same_features(tmp_path, cirr_split):
    for i in range(12, 200):  # a bigger gallery, so the kill lands between chunks
        Image.new("RGB", (48, 40), (i % 256, (7 * i) % 256, 90)).save(cirr_split / "dev" / f"extra-{i}.png")
    _edit(cirr_split / SPLIT, lambda s: s.update({f"extra-{i}": f"./dev/extra-{i}.png" for i in range(12, 200)}))
    script = (
        "import sys, time, cirbench.features as f; f.CHUNK = 8; real = f._encode_chunk\n"
        "def slow(*a, **k):\n    time.sleep(0.05)\n    return real(*a, **k)\n"
        "f._encode_chunk = slow\nfrom cirbench.cli import main\nsys.argv[0] = 'cirbench'\nmain()\n"
    )
    args = [
        "eval",
        "-m",
        "image-only",
        "-b",
        "cirbench-tiny:random",
        "--benchmark",
        "cirr",
        "--root",
        str(cirr_split),
        "--results-dir",
        str(tmp_path / "r"),
        "--device",
        "cpu",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    cache = Path(os.environ["CIRBENCH_CACHE"]) / "features"
    cache.mkdir(parents=True, exist_ok=True)
    _wait_for("*/chunk_000003.npy", cache, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    partial = next(cache.glob("*"))
    assert not (partial / "features.npy").exists() and len(list(partial.glob("chunk_*.npy"))) >= 4
    resumed = run(*args)
    assert resumed.exit_code == 0, resumed.output
    clean = run(*args[:-4], "--results-dir", tmp_path / "clean", "--device", "cpu", "--no-cache")
    assert clean.exit_code == 0, clean.output
    (got,), (want,) = iter_results(tmp_path / "r"), iter_results(tmp_path / "clean")
    assert got.metrics == want.metrics
    assert read_json(rankings_path(got.path))["top"] == read_json(rankings_path(want.path))["top"]
