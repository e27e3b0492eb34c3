# ruff: noqa: E501 - a table of cases reads best one case a line
"""A fault-injection pass over every command: bad inputs as a new user would make them, each run as a real
``cirbench`` process and classified.

Verdicts:
- ``clear``: exit 2, exactly one line on the terminal, no traceback, and the line holds the expected fragment;
- ``correct``: the command succeeded and its numbers equal the clean run's (where a bad input must not matter);
- ``unclear``: exit 2 in one line, but without the expected fragment (what it names is not what is wrong);
- ``traceback``: a Python traceback, or more than one line of error;
- ``silent``: exit 0 where the input must be refused, or numbers that differ from the clean run's;
- ``hang``: still running after the case's time limit.

Usage: ``python perf/fault_battery.py [--jobs 2] [--only SUBSTRING] [--json out.json]``. The workspace is built in a
temporary folder (a tiny CIRR split with generated images, a clean evaluation, a tiny LinCIR run); nothing is
downloaded. The figures go in docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TINY = "cirbench-tiny:random"


@dataclass
class Case:
    name: str
    surface: str
    args: list[str]
    expect: str = "error"  # error | same | ok
    fragment: str = ""  # must appear in the one-line error (case-insensitive)
    setup: Callable[[Path], None] | None = None  # edits the case's own copy of the workspace
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 180
    cwd: str = ""  # relative to the case workspace
    compare: str = ""  # for expect == same: a result glob whose metrics must equal the clean run's


# --------------------------------------------------------------------------------------------- the workspace


def _cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600):
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "CIRBENCH_CACHE": str(cwd / "cache"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cirbench", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def build_workspace(base: Path) -> Path:
    """A tiny CIRR split, a clean image+text result on it, a clean LinCIR phi (3 steps) and a copy of the cards."""
    from cirr_support import make_cirr
    from lincir_support import write_corpus

    ws = base / "ws"
    ws.mkdir()
    make_cirr(ws / "CIRR")
    (ws / "corpus").mkdir()
    write_corpus(ws / "corpus")
    out = _cli(EVAL + ["--results-dir", "results"], ws)
    assert out.returncode == 0, out.stderr
    out = _cli(
        ["train", "lincir", "-b", TINY, "--corpus", "corpus/captions.txt", "--out", "phi-run"]
        + ["--set", "steps=3", "--set", "global_batch=8", "--threads", "1"],
        ws,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    _limit_run(ws)
    return ws


EVAL = ["eval", "-m", "image+text", "-b", TINY, "--benchmark", "cirr", "--root", "CIRR", "--device", "cpu"]


def _eval(*extra: str) -> list[str]:
    return [*EVAL, "--results-dir", "results", *extra]


def _fresh(*extra: str) -> list[str]:
    return [*EVAL, "--results-dir", "fresh", *extra]


def _result(ws: Path) -> Path:
    return next(p for p in (ws / "results" / "runs").rglob("*.json"))


def _edit_json(path: Path, change: Callable) -> None:
    data = json.loads(path.read_text())
    out = change(data)
    path.write_text(json.dumps(data if out is None else out))


CAPS = "CIRR/cirr/captions/cap.rc2.val.json"
SPLIT = "CIRR/cirr/image_splits/split.rc2.val.json"


def _caps(change: Callable) -> Callable[[Path], None]:
    return lambda ws: _edit_json(ws / CAPS, change)


def _split(change: Callable) -> Callable[[Path], None]:
    return lambda ws: _edit_json(ws / SPLIT, change)


def _write(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def go(ws: Path) -> None:
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())

    return go


def _first_image(ws: Path) -> Path:
    return sorted((ws / "CIRR" / "dev").iterdir())[0]


def _truncate(path_of: Callable[[Path], Path], keep: float = 0.5) -> Callable[[Path], None]:
    def go(ws: Path) -> None:
        path = path_of(ws)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return go


def _symlink_escape(ws: Path) -> None:
    outside = ws / "outside.png"
    shutil.copy(_first_image(ws), outside)
    img = _first_image(ws)
    img.unlink()
    img.symlink_to(outside)


def _rewrite_images(ws: Path) -> None:
    from PIL import Image

    for i, path in enumerate(sorted((ws / "CIRR" / "dev").iterdir())):
        Image.new("RGB", (48, 40), ((11 * i) % 256, 200, (7 * i) % 256)).save(path)


def _huge_png(ws: Path) -> None:
    from PIL import Image

    Image.new("1", (30000, 30000)).save(_first_image(ws), format="PNG")


def _nan_phi(value: float) -> Callable[[Path], None]:
    def go(ws: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        src = next((ws / "phi-run").glob("phi*.safetensors"))
        with safe_open(str(src), "pt") as handle:
            meta = handle.metadata()
        state = {k: v.fill_(value) for k, v in load_file(str(src)).items()}
        save_file(state, str(ws / "bad-phi.safetensors"), metadata=meta)

    return go


def _nan_backbone(ws: Path) -> None:
    import torch

    from cirbench.backbones import load_backbone

    model = load_backbone(TINY).model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[first].view(-1)[0] = float("nan")
    torch.save(state, ws / "nan-backbone.pt")


def _wide_backbone(ws: Path) -> None:
    import torch

    from cirbench.backbones import load_backbone

    state = load_backbone(TINY).model.state_dict()
    state = {k: torch.zeros(*(s * 2 for s in v.shape)) if v.dim() else v for k, v in state.items()}
    torch.save(state, ws / "wide-backbone.pt")


def _edit_result(change: Callable) -> Callable[[Path], None]:
    return lambda ws: _edit_json(_result(ws), change)


def _set_metric(data: dict) -> None:
    key = next(iter(data["metrics"]))
    data["metrics"][key] = 99.0


def _rankings(ws: Path) -> Path:
    return next((ws / "results" / "runs").rglob("*.rankings.json.gz"))


def _edit_rankings(ws: Path) -> None:
    path = _rankings(ws)
    data = json.loads(gzip.decompress(path.read_bytes()))
    first = next(iter(data["top"]))
    data["top"][first] = list(reversed(data["top"][first]))
    path.write_bytes(gzip.compress(json.dumps(data).encode()))


def _card(name: str, text: str, folder: str = "methods") -> Callable[[Path], None]:
    def go(ws: Path) -> None:
        (ws / "cards" / "methods").mkdir(parents=True, exist_ok=True)
        (ws / "cards" / "benchmarks").mkdir(parents=True, exist_ok=True)
        (ws / "cards" / "methods" / "m.yaml").write_text(f"method: image+text\nbackbone: {TINY}\n")
        bench = f"benchmark: cirr\nsplit: val\nroot: {ws / 'CIRR'}\n"
        (ws / "cards" / "benchmarks" / "b.yaml").write_text(bench)
        (ws / "cards" / folder / name).write_text(text)

    return go


ALL = ["eval", "--all", "--methods-dir", "cards/methods", "--benchmarks-dir", "cards/benchmarks"]
ALL += ["--results-dir", "fresh", "--device", "cpu"]
BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
TRAIN = ["train", "lincir", "-b", TINY, "--corpus", "corpus/captions.txt", "--threads", "1"]


def _train(*extra: str) -> list[str]:
    return [*TRAIN, "--out", "new-run", "--set", "steps=2", "--set", "global_batch=8", *extra]


def _damage_state(ws: Path) -> None:
    path = next((ws / "phi-run").rglob("state.pt"), None) or next((ws / "phi-run").rglob("*.pt"))
    path.write_bytes(path.read_bytes()[:100])


def _flip_phi(ws: Path) -> None:
    path = next((ws / "phi-run").glob("phi*.safetensors"))
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


def _limit_run(ws: Path) -> None:
    """A --limit 2 run of the clean one's method, in its own results folder (the compare case names it by path)."""
    _cli([*EVAL, "--results-dir", "limit-results", "--limit", "2"], ws)


def _rankings_expect(command: str) -> str:
    """verify reports damage (exit 1); the leaderboard never reads rankings (its numbers are the result's);
    eval reuse computes the result again (a note names the rankings); the rest refuse in one line."""
    return {"verify": "exit1", "leaderboard": "ok", "eval": "ok"}.get(command, "error")


def _after_eval(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    """Evaluate in the case's own folder first (the workspace copy has other image paths), then damage."""

    def go(ws: Path) -> None:
        _cli(_eval(), ws)
        damage(ws)

    return go


def _cache_damage(kind: str) -> Callable[[Path], None]:
    def go(ws: Path) -> None:
        for path in (ws / "cache").rglob("*.npy"):
            data = bytearray(path.read_bytes())
            if kind == "truncate":
                path.write_bytes(bytes(data[: len(data) // 2]))
            else:
                data[-3] ^= 0x40
                path.write_bytes(bytes(data))

    return go


def _readonly_dir(ws: Path) -> None:
    (ws / "ro").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ws / "ro")], check=False)


def _full_dir(ws: Path) -> None:
    (ws / "full").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(ws / "full")], check=False)
    with contextlib.suppress(OSError), open(ws / "full" / "filler", "wb", buffering=0) as handle:
        while True:  # fill it: the next write fails with ENOSPC
            handle.write(b"x" * 1024)


def _freedom_list(ws: Path, text: str) -> None:
    (ws / "FD").mkdir(exist_ok=True)


# --------------------------------------------------------------------------------------------- the cases


def cases() -> list[Case]:
    c: list[Case] = []
    add = c.append
    # annotations
    for name, change, frag in [
        ("pairid twice", lambda d: d[1].__setitem__("pairid", d[0]["pairid"]), "pairid"),
        ("pairid list", lambda d: d[0].__setitem__("pairid", [1]), "pairid"),
        ("pairid string", lambda d: d[0].__setitem__("pairid", "100"), "pairid"),
        ("pairid bool", lambda d: d[0].__setitem__("pairid", True), "pairid"),
        ("caption null", lambda d: d[0].__setitem__("caption", None), "caption"),
        ("caption list", lambda d: d[0].__setitem__("caption", ["a"]), "caption"),
        ("reference unknown", lambda d: d[0].__setitem__("reference", "nope"), "nope"),
        ("reference missing", lambda d: d[0].__delitem__("reference"), "reference"),
        ("target unknown", lambda d: d[0].__setitem__("target_hard", "nope"), "nope"),
        ("target_soft string", lambda d: d[0].__setitem__("target_soft", {"x": "a"}), "target_soft"),
        (
            "target_soft NaN",
            lambda d: d[0].__setitem__("target_soft", {d[0]["target_hard"]: float("nan")}),
            "target_soft",
        ),
        ("img_set members not list", lambda d: d[0]["img_set"].__setitem__("members", "abc"), "members"),
        ("img_set member unknown", lambda d: d[0]["img_set"]["members"].__setitem__(1, "nope"), "nope"),
        ("record not object", lambda d: d.__setitem__(0, 5), "record 0"),
        ("captions an object", lambda d: {"a": d}, "cap.rc2.val.json"),
        ("captions empty list", lambda d: [], "cap.rc2.val.json"),
    ]:
        add(Case(f"CIRR captions: {name}", "annotations", _fresh(), fragment=frag, setup=_caps(change)))
    # the real cap.rc2.test1.json holds a blank caption, so a blank caption is data, not a fault: it is evaluated
    add(
        Case(
            "CIRR captions: caption empty",
            "annotations",
            _fresh(),
            expect="ok",
            fragment="wrote",
            setup=_caps(lambda d: d[0].__setitem__("caption", "")),
        )
    )
    add(
        Case(
            "CIRR captions: truncated JSON",
            "annotations",
            _fresh(),
            fragment="cap.rc2.val.json",
            setup=_truncate(lambda ws: ws / CAPS),
        )
    )
    add(
        Case(
            "CIRR captions: key twice",
            "annotations",
            _fresh(),
            fragment="twice",
            setup=lambda ws: (ws / CAPS).write_text(
                (ws / CAPS).read_text().replace('"caption"', '"caption": "x", "caption"', 1)
            ),
        )
    )
    add(
        Case(
            "CIRR captions: not UTF-8",
            "annotations",
            _fresh(),
            fragment="cap.rc2.val.json",
            setup=_write(CAPS, b"\xff\xfe[]"),
        )
    )
    add(
        Case(
            "CIRR captions: missing file",
            "annotations",
            _fresh(),
            fragment="cap.rc2.val.json",
            setup=lambda ws: (ws / CAPS).unlink(),
        )
    )
    add(
        Case(
            "CIRR captions: a folder",
            "annotations",
            _fresh(),
            fragment="cap.rc2.val.json",
            setup=lambda ws: ((ws / CAPS).unlink(), (ws / CAPS).mkdir()),
        )
    )
    for name, change, frag in [
        ("path ../", lambda d: d.__setitem__(next(iter(d)), "../../etc/passwd"), "leaves"),
        ("absolute path", lambda d: d.__setitem__(next(iter(d)), "/etc/passwd"), "absolute"),
        ("path not string", lambda d: d.__setitem__(next(iter(d)), 5), "path"),
        ("split a list", lambda d: list(d), "split.rc2.val.json"),
    ]:
        add(Case(f"CIRR split: {name}", "annotations", _fresh(), fragment=frag, setup=_split(change)))
    # images
    add(Case("image: symlink leaving the root", "images", _fresh(), fragment="outside", setup=_symlink_escape))
    add(Case("image: truncated PNG", "images", _fresh(), fragment=".png", setup=_truncate(_first_image)))
    add(Case("image: empty file", "images", _fresh(), fragment=".png", setup=_truncate(_first_image, 0)))
    add(
        Case(
            "image: not an image",
            "images",
            _fresh(),
            fragment=".png",
            setup=lambda ws: _first_image(ws).write_text("hello"),
        )
    )
    add(Case("image: missing", "images", _fresh(), fragment="missing", setup=lambda ws: _first_image(ws).unlink()))
    add(
        Case(
            "image: a folder",
            "images",
            _fresh(),
            fragment=".png",
            setup=lambda ws: (
                (_first_image(ws).unlink(), _first_image(ws).mkdir())
                if False
                else (lambda p: (p.unlink(), p.mkdir()))(_first_image(ws))
            ),
        )
    )
    add(Case("image: over the pixel budget", "images", _fresh(), fragment="pixel", setup=_huge_png, timeout=120))
    add(
        Case(
            "image: over the pixel budget, device decode",
            "images",
            _fresh("--decode", "device"),
            fragment="pixel",
            setup=_huge_png,
            timeout=120,
        )
    )
    add(
        Case(
            "images changed: result not reused",
            "identity",
            _eval(),
            expect="ok",
            setup=_rewrite_images,
            fragment="images changed",
        )
    )
    add(
        Case(
            "data check: truncated PNG (default)",
            "images",
            ["data", "check", "--benchmark", "cirr", "--root", "CIRR"],
            expect="exit1",
            fragment=".png",
            setup=_truncate(_first_image),
        )
    )
    # options
    for name, extra, frag in [
        ("unknown method option", ["-o", "bogus=1"], "bogus"),
        ("method option twice", ["-m", "slerp", "-o", "alpha=0.1", "-o", "alpha=0.2"], "alpha"),
        ("method option wrong type", ["-m", "slerp", "-o", "alpha=abc"], "alpha"),
        ("method option out of range", ["-m", "slerp", "-o", "alpha=7"], "alpha"),
        ("method option nan", ["-m", "slerp", "-o", "alpha=nan"], "alpha"),
        ("option without =", ["-o", "bogus"], "bogus"),
        ("unknown protocol option", ["-p", "bogus=1"], "bogus"),
        ("protocol option twice", ["-p", "scoring=hard", "-p", "scoring=soft"], "scoring"),
        ("protocol option bad value", ["-p", "remove_reference=maybe"], "remove_reference"),
        ("unknown index", ["--index", "bogus"], "bogus"),
        ("index param unknown", ["--index", "faiss-ivf", "--index-param", "bogus=1"], "bogus"),
        ("index param bad", ["--index", "faiss-ivf", "--index-param", "nlist=-3"], "nlist"),
        (
            "index param twice",
            ["--index", "faiss-ivf", "--index-param", "nlist=2", "--index-param", "nlist=3"],
            "nlist",
        ),
        ("batch size 0", ["--batch-size", "0"], "batch"),
        ("batch size negative", ["--batch-size", "-4"], "batch"),
        ("workers negative", ["--workers", "-1"], "workers"),
        ("limit 0", ["--limit", "0"], "limit"),
        ("limit negative", ["--limit", "-5"], "limit"),
        ("device unknown", ["--device", "tpu"], "tpu"),
        ("device cuda absent", ["--device", "cuda"], "cuda"),
        ("decode unknown", ["--decode", "magic"], "magic"),
        ("seeds not numbers", ["--seeds", "a,b"], "seeds"),
        ("seeds without {seed}", ["-m", "lincir", "-c", "phi-run/x.safetensors", "--seeds", "0,1"], "{seed}"),
        ("{seed} without seeds", ["-m", "lincir", "-c", "phi-run/{seed}.safetensors"], "{seed}"),
        ("checkpoint for a method without one", ["-c", "CIRR/dev"], "checkpoint"),
        ("split unknown", ["--split", "train2"], "train2"),
    ]:
        add(Case(f"eval: {name}", "options", _fresh(*extra), fragment=frag))
    for name, args, frag in [
        (
            "unknown benchmark",
            ["eval", "-m", "image+text", "-b", TINY, "--benchmark", "cirrr", "--root", "CIRR"],
            "cirrr",
        ),
        (
            "unknown method",
            ["eval", "-m", "imagetext", "-b", TINY, "--benchmark", "cirr", "--root", "CIRR"],
            "imagetext",
        ),
        (
            "unknown backbone",
            ["eval", "-m", "image+text", "-b", "ViT-Q-99:x", "--benchmark", "cirr", "--root", "CIRR"],
            "ViT-Q-99",
        ),
        ("shapes-clip:v3", ["eval", "-m", "image+text", "-b", "shapes-clip:v3", "--benchmark", "shapes"], "v3"),
        (
            "root missing",
            ["eval", "-m", "image+text", "-b", TINY, "--benchmark", "cirr", "--root", "nowhere"],
            "nowhere",
        ),
        ("root a file", ["eval", "-m", "image+text", "-b", TINY, "--benchmark", "cirr", "--root", CAPS], "cap.rc2"),
        ("results dir a file", [*_fresh()[:-2], "--results-dir", CAPS], "cap.rc2"),
        (
            "pretrained offline",
            ["eval", "-m", "image+text", "-b", "ViT-B-32:openai", "--benchmark", "cirr", "--root", "CIRR"],
            "download",
        ),
    ]:
        add(
            Case(
                f"eval: {name}",
                "options",
                [*args, "--device", "cpu"] if "--device" not in args else args,
                fragment=frag,
            )
        )
    # weights
    add(
        Case(
            "phi all NaN",
            "weights",
            _fresh("-m", "lincir", "-c", "bad-phi.safetensors"),
            fragment="phi",
            setup=_nan_phi(float("nan")),
        )
    )
    add(
        Case(
            "phi all Inf",
            "weights",
            _fresh("-m", "lincir", "-c", "bad-phi.safetensors"),
            fragment="phi",
            setup=_nan_phi(float("inf")),
        )
    )
    add(
        Case(
            "phi random bytes",
            "weights",
            _fresh("-m", "lincir", "-c", "bad-phi.safetensors"),
            fragment="bad-phi",
            setup=_write("bad-phi.safetensors", os.urandom(4096)),
        )
    )
    add(
        Case(
            "phi empty",
            "weights",
            _fresh("-m", "lincir", "-c", "bad-phi.safetensors"),
            fragment="bad-phi",
            setup=_write("bad-phi.safetensors", b""),
        )
    )
    add(
        Case(
            "phi .pt that is not a checkpoint",
            "weights",
            _fresh("-m", "lincir", "-c", "bad-phi.pt"),
            fragment="bad-phi",
            setup=_write("bad-phi.pt", b"PK\x03\x04garbage"),
        )
    )
    add(Case("phi bit flipped", "weights", _fresh("-m", "lincir", "-c", "PHI"), fragment="phi", setup=_flip_phi))
    add(
        Case(
            "backbone NaN weight",
            "weights",
            [
                "eval",
                "-m",
                "image+text",
                "-b",
                "cirbench-tiny:nan-backbone.pt",
                "--benchmark",
                "cirr",
                "--root",
                "CIRR",
                "--results-dir",
                "fresh",
                "--device",
                "cpu",
            ],
            fragment="backbone",
            setup=_nan_backbone,
        )
    )
    add(
        Case(
            "backbone wrong width",
            "weights",
            [
                "eval",
                "-m",
                "image+text",
                "-b",
                "cirbench-tiny:wide-backbone.pt",
                "--benchmark",
                "cirr",
                "--root",
                "CIRR",
                "--results-dir",
                "fresh",
                "--device",
                "cpu",
            ],
            fragment="wide-backbone",
            setup=_wide_backbone,
        )
    )
    add(
        Case(
            "backbone random bytes",
            "weights",
            [
                "eval",
                "-m",
                "image+text",
                "-b",
                "cirbench-tiny:junk.pt",
                "--benchmark",
                "cirr",
                "--root",
                "CIRR",
                "--results-dir",
                "fresh",
                "--device",
                "cpu",
            ],
            fragment="junk.pt",
            setup=_write("junk.pt", os.urandom(2048)),
        )
    )
    # stored results
    for cmd in (
        ["leaderboard", "--results-dir", "results"],
        ["stats", "RUN", "--results-dir", "results"],
        ["inspect", "RUN", "--results-dir", "results"],
        ["verify", "--results-dir", "results"],
        ["submit", "--benchmark", "cirr", "--run", "RUN", "--results-dir", "results"],
        _eval(),
    ):
        label = cmd[0] if cmd[0] != "eval" else "eval reuse"
        prepare = _after_eval if cmd[0] == "eval" else (lambda damage: damage)
        damages = [
            ("a metric edited in the result", _edit_result(_set_metric), ".json"),
            ("result truncated", _truncate(_result), ".json"),
            ("rankings edited", _edit_rankings, "rankings"),
        ]
        for what, damage, fragment in damages:
            expect = (
                _rankings_expect(cmd[0]) if what == "rankings edited" else ("exit1" if cmd[0] == "verify" else "error")
            )
            if cmd[0] == "leaderboard" and what == "rankings edited":
                fragment = ""
            add(Case(f"{label}: {what}", "results", cmd, fragment=fragment, setup=prepare(damage), expect=expect))
    add(
        Case(
            "leaderboard: result schema 99",
            "results",
            ["leaderboard", "--results-dir", "results"],
            fragment="schema",
            setup=_edit_result(lambda d: d.__setitem__("schema_version", 99)),
        )
    )
    add(
        Case(
            "leaderboard: result a list",
            "results",
            ["leaderboard", "--results-dir", "results"],
            fragment=".json",
            setup=lambda ws: _result(ws).write_text("[1, 2]"),
        )
    )
    add(
        Case(
            "stats: rankings deleted",
            "results",
            ["stats", "RUN", "--results-dir", "results"],
            fragment="rankings",
            setup=lambda ws: _rankings(ws).unlink(),
        )
    )
    add(Case("stats: unknown run", "results", ["stats", "ffffffff", "--results-dir", "results"], fragment="ffffffff"))
    add(
        Case(
            "stats: resamples too few",
            "results",
            ["stats", "RUN", "--results-dir", "results", "--resamples", "5"],
            fragment="resamples",
        )
    )
    add(
        Case(
            "compare: a --limit run with a full one",
            "results",
            ["compare", "RUN", "LIMITRUN", "--results-dir", "results"],
            fragment="limit",
        )
    )
    add(
        Case(
            "inspect: unknown metric",
            "results",
            ["inspect", "RUN", "--results-dir", "results", "--metric", "R@7"],
            fragment="R@7",
        )
    )
    add(
        Case(
            "inspect: rows negative",
            "results",
            ["inspect", "RUN", "--results-dir", "results", "--rows", "-3"],
            fragment="rows",
        )
    )
    add(
        Case(
            "inspect: --csv into a folder",
            "results",
            ["inspect", "RUN", "--results-dir", "results", "--csv", "CIRR"],
            fragment="CIRR",
        )
    )
    add(
        Case(
            "leaderboard: --out into a read-only folder",
            "disk",
            ["leaderboard", "--results-dir", "results", "--out", "ro/LB.md"],
            fragment="ro/LB.md",
            setup=_readonly_dir,
        )
    )
    add(
        Case(
            "leaderboard: --out on a full disk",
            "disk",
            ["leaderboard", "--results-dir", "results", "--out", "full/LB.md"],
            fragment="full",
            setup=_full_dir,
        )
    )
    add(
        Case(
            "eval: results on a full disk",
            "disk",
            [*_fresh()[:-2], "--results-dir", "full/r"],
            fragment="full",
            setup=_full_dir,
        )
    )
    add(
        Case(
            "leaderboard: unknown columns",
            "results",
            ["leaderboard", "--results-dir", "results", "--columns", "R@7"],
            fragment="R@7",
        )
    )
    add(
        Case(
            "leaderboard: --bare without --benchmark",
            "results",
            ["leaderboard", "--results-dir", "results", "--bare"],
            fragment="--benchmark",
        )
    )
    add(
        Case(
            "leaderboard: reported file bad YAML",
            "results",
            ["leaderboard", "--results-dir", "results", "--reported", "rep.yaml"],
            fragment="rep.yaml",
            setup=_write("rep.yaml", "a: [1, 2\n"),
        )
    )
    add(
        Case(
            "leaderboard: reported alias bomb",
            "results",
            ["leaderboard", "--results-dir", "results", "--reported", "rep.yaml"],
            fragment="rep.yaml",
            setup=_write("rep.yaml", BOMB),
            timeout=60,
        )
    )
    # cache
    add(
        Case(
            "feature cache truncated: same numbers",
            "cache",
            _fresh(),
            expect="same",
            setup=_cache_damage("truncate"),
            compare="fresh",
        )
    )
    add(
        Case(
            "feature cache bit flipped: same numbers",
            "cache",
            _fresh(),
            expect="same",
            setup=_cache_damage("flip"),
            compare="fresh",
        )
    )
    # cards
    for name, text, frag, folder in [
        ("method card typo optoins", f"method: image+text\nbackbone: {TINY}\noptoins: {{}}\n", "optoins", "methods"),
        (
            "benchmark card protocol typo",
            "benchmark: cirr\nsplit: val\nroot: ../../CIRR\nprotocol: {}\n",
            "protocol",
            "benchmarks",
        ),
        ("card key twice", f"method: image+text\nmethod: text-only\nbackbone: {TINY}\n", "method", "methods"),
        (
            "card alias bomb",
            f"method: image+text\nbackbone: {TINY}\n" + BOMB.replace("a:", "x0:", 1) + "description: *i\n",
            "",
            "methods",
        ),
        ("card not a mapping", "- a\n- b\n", "x.yaml", "methods"),
        ("card options a list", f"method: image+text\nbackbone: {TINY}\noptions: [a, b]\n", "options", "methods"),
        ("card unknown method", f"method: imagetext\nbackbone: {TINY}\n", "imagetext", "methods"),
        ("card YAML tag", "method: !!python/object/apply:os.system ['true']\n", "x.yaml", "methods"),
        ("card binary", "\x00\x01\x02", "x.yaml", "methods"),
        ("card empty", "", "x.yaml", "methods"),
        ("card unknown option", f"method: slerp\nbackbone: {TINY}\noptions: {{alfa: 0.3}}\n", "alfa", "methods"),
        ("card option out of range", f"method: slerp\nbackbone: {TINY}\noptions: {{alpha: 3}}\n", "alpha", "methods"),
        ("benchmark card unknown split", "benchmark: cirr\nsplit: train9\nroot: ../../CIRR\n", "train9", "benchmarks"),
        ("benchmark card missing root", "benchmark: cirr\nsplit: val\nroot: ../../nowhere\n", "skipped", "benchmarks"),
        ("huge card", "method: image+text\ndescription: " + "x" * 3_000_000 + "\n", "x.yaml", "methods"),
    ]:
        expect = "ok" if frag == "skipped" else "error"
        add(
            Case(
                f"cards: {name}",
                "cards",
                ALL,
                expect=expect,
                fragment=frag,
                setup=_card("x.yaml", text, folder),
                timeout=60,
            )
        )
    # training
    for name, extra, frag in [
        ("lr 0", ["--set", "lr=0"], "lr"),
        ("lr negative", ["--set", "lr=-1"], "lr"),
        ("steps 0", ["--set", "steps=0"], "steps"),
        ("unknown key", ["--set", "lrr=1"], "lrr"),
        ("key twice", ["--set", "lr=1e-4", "--set", "lr=1e-3"], "lr"),
        ("wrong type", ["--set", "steps=abc"], "steps"),
        ("dropout 2", ["--set", "phi_dropout=2"], "phi_dropout"),
        ("batch 0", ["--set", "global_batch=0"], "global_batch"),
        ("NaN loss", ["--lr", "1e30"], "finite"),
        ("threads 0", ["--threads", "0"], "threads"),
    ]:
        add(Case(f"train: {name}", "training", _train(*extra), fragment=frag))
    add(
        Case(
            "train: corpus missing",
            "training",
            [*TRAIN[:4], "--corpus", "nope.txt", "--out", "new-run"],
            fragment="nope.txt",
        )
    )
    add(
        Case(
            "train: corpus empty",
            "training",
            _train(),
            fragment="captions.txt",
            setup=_write("corpus/captions.txt", ""),
        )
    )
    add(
        Case(
            "train: corpus binary",
            "training",
            _train(),
            fragment="captions.txt",
            setup=_write("corpus/captions.txt", os.urandom(3000)),
        )
    )
    add(Case("train: existing --out", "training", [*TRAIN, "--out", "phi-run", "--set", "steps=2"], fragment="phi-run"))
    add(
        Case(
            "train: resume a damaged state",
            "training",
            [*TRAIN, "--resume", "phi-run", "--set", "steps=5"],
            fragment="phi-run",
            setup=_damage_state,
        )
    )
    add(Case("train: --config missing", "training", ["train", "lincir", "--config", "nope.yaml"], fragment="nope.yaml"))
    # score
    for name, data, frag in [
        ("rankings not JSON", "{", "r.json"),
        ("rankings unknown query", json.dumps({"999": ["dev-0-0-img0"]}), "999"),
        ("rankings unknown image", json.dumps({str(q): ["nope"] for q in range(100, 104)}), "nope"),
        ("rankings a list", json.dumps([1, 2]), "r.json"),
        (
            "rankings duplicate image",
            json.dumps({str(q): ["dev-1-0-img1", "dev-1-0-img1"] for q in range(100, 104)}),
            "dev-1-0-img1",
        ),
    ]:
        add(
            Case(
                f"score: {name}",
                "score",
                ["score", "--rankings", "r.json", "--benchmark", "cirr", "--root", "CIRR"],
                fragment=frag,
                setup=_write("r.json", data),
            )
        )
    for more in ("fault_cases_data", "fault_cases_tools"):  # more surfaces, one module each (beside this file)
        try:
            module = __import__(more)
        except ModuleNotFoundError:
            continue
        c.extend(module.cases())
    # torchrun
    add(Case("torchrun env incomplete", "torchrun", _fresh(), fragment="WORLD_SIZE", env={"WORLD_SIZE": "2"}))
    add(
        Case(
            "cache ls on an unreadable cache",
            "cache",
            ["cache", "ls"],
            expect="ok",
            fragment="junk",
            setup=_write("cache/features/junk.npy", b"xx"),
        )
    )
    return c


# --------------------------------------------------------------------------------------------- running


def _resolve_args(args: list[str], ws: Path) -> list[str]:
    out = []
    for a in args:
        if a == "RUN":
            a = json.loads(_result(ws).read_text()).get("run_key", "x") if _result(ws).exists() else "x"
        elif a == "LIMITRUN":
            a = str(next((ws / "limit-results" / "runs").rglob("*--*.json"), "x"))
        elif a == "PHI":
            a = str(next((ws / "phi-run").glob("phi*.safetensors")))
        out.append(a)
    return out


_CLEAN: dict[str, str] = {}


def _clean_key(ws: Path) -> str:
    return _CLEAN.get("key", "")


def _metrics(folder: Path) -> dict | None:
    files = [p for p in folder.rglob("*.json") if "runs" in p.parts]
    return json.loads(files[0].read_text()).get("metrics") if files else None


def run_case(case: Case, workspace: Path, base: Path, clean_metrics: dict) -> dict:
    ws = base / f"case-{abs(hash(case.name)) % 10**8}"
    shutil.copytree(workspace, ws, symlinks=True)
    verdict, detail = "", ""
    try:
        args = _resolve_args(case.args, ws)  # before the setup damages what names the run
        if case.setup is not None:
            case.setup(ws)
        start = time.perf_counter()
        try:
            out = _cli(args, ws / case.cwd if case.cwd else ws, case.env, timeout=case.timeout)
        except subprocess.TimeoutExpired:
            return {"name": case.name, "surface": case.surface, "verdict": "hang", "detail": f">{case.timeout}s"}
        took = time.perf_counter() - start
        text = (out.stdout + out.stderr).strip()
        lines = [line for line in text.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        # progress lines before an error are fine; the error itself must be one line and the last one
        traceback = "Traceback" in text or (
            out.returncode not in (0, 1) and not (len(errors) == 1 and lines and lines[-1] == errors[0])
        )
        if case.expect in ("error", "exit1"):
            code = 2 if case.expect == "error" else 1
            if traceback:
                verdict = "traceback"
            elif out.returncode == 0:
                verdict = "silent"
            elif out.returncode == code:
                ok = case.fragment.lower() in text.lower()
                verdict = "clear" if ok else "unclear"
            else:
                verdict = "unclear"
        elif case.expect == "same":
            got = _metrics(ws / case.compare)
            verdict = "traceback" if traceback else ("correct" if got == clean_metrics else "silent")
        else:  # ok: must succeed; a fragment, when given, must be said
            if traceback:
                verdict = "traceback"
            elif out.returncode != 0:
                verdict = "unclear"
            else:
                verdict = "correct" if case.fragment.lower() in text.lower() else "silent"
        detail = f"exit {out.returncode}, {took:.1f}s: {text.splitlines()[-1][:200] if text else ''}"
    except Exception as error:  # noqa: BLE001 - a broken setup is reported, not fatal
        verdict, detail = "setup-failed", f"{type(error).__name__}: {error}"
    finally:
        for mount in ("ro", "full"):
            if (ws / mount).is_mount():
                subprocess.run(["umount", str(ws / mount)], check=False)
        shutil.rmtree(ws, ignore_errors=True)
    return {"name": case.name, "surface": case.surface, "verdict": verdict, "detail": detail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", default="")
    parser.add_argument("--json", type=Path)
    ns = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cirbench-faults-"))
    try:
        workspace = build_workspace(base)
        _CLEAN["key"] = json.loads(_result(workspace).read_text())["run_key"]
        clean_metrics = _metrics(workspace / "results")
        selected = [case for case in cases() if ns.only.lower() in case.name.lower()]
        with ThreadPoolExecutor(ns.jobs) as pool:
            rows = list(pool.map(lambda case: run_case(case, workspace, base, clean_metrics), selected))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
        if row["verdict"] not in ("clear", "correct"):
            print(f"{row['verdict']:>12}  {row['surface']:<11} {row['name']}: {row['detail']}")
    print(f"\n{len(rows)} bad inputs: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if ns.json:
        ns.json.write_text(json.dumps({"counts": counts, "cases": rows}, indent=1))


if __name__ == "__main__":
    main()
