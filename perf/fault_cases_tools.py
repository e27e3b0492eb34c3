# ruff: noqa: E501 - a table of cases reads best one case a line
"""Fault cases for the tool surfaces: stats / compare / inspect / sensitivity, leaderboard and its published rows,
submit, score, verify, results migrate, --index, --decode, --seeds, torchrun, the cache commands, the LinCIR tools,
shapes and demo. Loaded by ``perf/fault_battery.py`` (``cases()``); see that module for the verdicts."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from fault_battery import (
    CAPS,
    TINY,
    TRAIN,
    Case,
    _edit_json,
    _first_image,
    _fresh,
    _rankings,
    _readonly_dir,
    _result,
    _truncate,
    _write,
)

RES = ["--results-dir", "results"]
SCORE = ["score", "--rankings", "r.json", "--benchmark", "cirr", "--root", "CIRR"]
LB = ["leaderboard", *RES]


def _reported(text: str) -> Callable[[Path], None]:
    return _write("rep.yaml", "rows:\n" + text)


ROW = "  - method: lincir\n    backbone: ViT-L-14:openai\n    source: paper\n"


def _all(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def go(ws: Path) -> None:
        for step in steps:
            step(ws)

    return go


def _move_data(ws: Path) -> None:
    (ws / "CIRR").rename(ws / "CIRR-moved")


def _seed_ckpts(ws: Path) -> None:
    phi = next((ws / "phi-run").glob("phi*.safetensors"))
    (ws / "seeds" / "seed-0").mkdir(parents=True)
    shutil.copy(phi, ws / "seeds" / "seed-0" / "phi.safetensors")


def _fake_faiss(ws: Path) -> None:
    (ws / "nofaiss").mkdir()
    (ws / "nofaiss" / "faiss.py").write_text("raise ImportError('No module named faiss')\n")


def _cmyk_jpeg(ws: Path) -> None:
    from PIL import Image

    path = _first_image(ws)
    Image.open(path).convert("CMYK").save(path, format="JPEG")


def _truncated_jpeg(ws: Path) -> None:
    from PIL import Image

    path = _first_image(ws)
    Image.open(path).convert("RGB").save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[:300])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _other_rank(port: int) -> Callable[[Path], None]:
    """Start rank 1 of a 2-rank group in the background; its shard holds a truncated image, so it fails and the
    case's own process (rank 0) must name it."""

    def go(ws: Path) -> None:
        bad = ws / "CIRR" / "dev" / "dev-10-0-img0.png"
        bad.write_bytes(bad.read_bytes()[:60])
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CIRBENCH_CACHE": str(ws / "cache"), **_dist(port, 1)}
        args = [sys.executable, "-m", "cirbench", *_fresh("--batch-size", "2", "--no-cache")]
        subprocess.Popen(args, cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return go


def _dist(port: int, rank: int) -> dict[str, str]:
    return {
        "WORLD_SIZE": "2",
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def _cache_entry(ws: Path) -> Path:
    return next(p for p in (ws / "cache").rglob("*") if p.is_dir() and any(p.glob("*.json")))


def _damage_manifest(ws: Path) -> None:
    for path in (ws / "cache").rglob("*.json"):
        path.write_text("{not json")


def _manifest(text: str) -> Callable[[Path], None]:
    def go(ws: Path) -> None:
        for path in (ws / "cache").rglob("manifest.json"):
            path.write_text(text)

    return go


def _cache_file_for_folder(ws: Path) -> None:
    for child in list((ws / "cache").iterdir()):
        if child.is_dir():
            shutil.rmtree(child)
            child.write_text("x")


def _rankings_to_folder(ws: Path) -> None:
    path = _rankings(ws)
    path.unlink()
    path.mkdir()


def _odd_results(ws: Path) -> None:
    runs = _result(ws).parent  # where result files are read: runs/<benchmark>/<split>/
    (runs / "notes.json").write_text("[1, 2]")
    (runs / "empty.json").write_text("")
    (runs / "folder.json").mkdir()


def _second_row(ws: Path) -> None:
    """A result file copied under another name: two files with one run key."""
    path = _result(ws)
    shutil.copy(path, path.with_name("copy-" + path.name))


def _rankings_top(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def go(ws: Path) -> None:
        path = _rankings(ws)
        data = json.loads(gzip.decompress(path.read_bytes()))
        change(data)
        path.write_bytes(gzip.compress(json.dumps(data).encode()))

    return go


def cases() -> list[Case]:
    c: list[Case] = []
    add = c.append
    ro = _readonly_dir
    # ---------------------------------------------------------------- stats / compare / inspect
    add(
        Case(
            "tools stats: rankings file is a folder",
            "stats",
            ["stats", "RUN", *RES],
            fragment="rankings",
            setup=_rankings_to_folder,
        )
    )
    add(Case("tools stats: --root missing", "stats", ["stats", "RUN", *RES, "--root", "nowhere"], fragment="nowhere"))
    add(
        Case(
            "tools stats: run is a text file", "stats", ["stats", "corpus/captions.txt", *RES], fragment="captions.txt"
        )
    )
    add(Case("tools stats: empty run key", "stats", ["stats", "", *RES], fragment="run"))
    add(Case("tools stats: results dir missing", "stats", ["stats", "RUN", "--results-dir", "nope"], fragment="nope"))
    add(Case("tools stats: data moved", "stats", ["stats", "RUN", *RES], fragment="--root", setup=_move_data))
    add(Case("tools compare: unknown run B", "stats", ["compare", "RUN", "ffffffff", *RES], fragment="ffffffff"))
    add(Case("tools compare: a run with itself", "stats", ["compare", "RUN", "RUN", *RES], expect="ok"))
    add(Case("tools inspect: --metric empty", "stats", ["inspect", "RUN", *RES, "--metric", ""], fragment="metric"))
    add(Case("tools inspect: --rows 0", "stats", ["inspect", "RUN", *RES, "--rows", "0"], expect="ok"))
    add(
        Case(
            "tools inspect: --json into a read-only folder",
            "stats",
            ["inspect", "RUN", *RES, "--json", "ro/t.json"],
            fragment="ro/t.json",
            setup=ro,
        )
    )
    add(
        Case(
            "tools inspect: --csv under a file",
            "stats",
            ["inspect", "RUN", *RES, "--csv", f"{CAPS}/t.csv"],
            fragment="cap.rc2.val.json",
        )
    )
    add(
        Case(
            "tools inspect: --csv missing parent",
            "stats",
            ["inspect", "RUN", *RES, "--csv", "new/dir/t.csv"],
            expect="ok",
            fragment="wrote new/dir/t.csv",
        )
    )
    add(
        Case(
            "tools inspect: --csv and --json one path",
            "stats",
            ["inspect", "RUN", *RES, "--csv", "t.out", "--json", "t.out"],
            fragment="t.out",
        )
    )
    add(
        Case(
            "tools inspect: --grid into a folder", "stats", ["inspect", "RUN", *RES, "--grid", "CIRR"], fragment="CIRR"
        )
    )
    add(
        Case(
            "tools inspect: --grid read-only",
            "stats",
            ["inspect", "RUN", *RES, "--grid", "ro/g.png"],
            fragment="ro/g.png",
            setup=ro,
        )
    )
    add(
        Case(
            "tools inspect: --grid and --csv one path",
            "stats",
            ["inspect", "RUN", *RES, "--grid", "g.png", "--csv", "g.png"],
            fragment="g.png",
        )
    )
    add(
        Case(
            "tools inspect: --grid data moved",
            "stats",
            ["inspect", "RUN", *RES, "--grid", "g.png"],
            fragment="--root",
            setup=_move_data,
        )
    )
    # ---------------------------------------------------------------- sensitivity
    sens = ["sensitivity", "-b", TINY, "--root", "CIRR", "--device", "cpu", "--results-dir", "fresh"]
    add(
        Case(
            "tools sensitivity: unknown method",
            "sensitivity",
            [*sens, "-m", "imagetxt", "--benchmark", "cirr"],
            fragment="imagetxt",
        )
    )
    add(
        Case(
            "tools sensitivity: unknown benchmark",
            "sensitivity",
            [*sens, "-m", "image+text", "--benchmark", "cirq"],
            fragment="cirq",
        )
    )
    add(
        Case(
            "tools sensitivity: unknown metric",
            "sensitivity",
            [*sens, "-m", "image+text", "--benchmark", "cirr", "--metric", "R@7"],
            fragment="R@7",
        )
    )
    add(
        Case(
            "tools sensitivity: --out a folder",
            "sensitivity",
            [*sens, "-m", "image+text", "--benchmark", "cirr", "--out", "CIRR"],
            fragment="CIRR",
        )
    )
    add(
        Case(
            "tools sensitivity: --out read-only",
            "sensitivity",
            [*sens, "-m", "image+text", "--benchmark", "cirr", "--out", "ro/s.md"],
            fragment="ro/s.md",
            setup=ro,
        )
    )
    add(
        Case(
            "tools sensitivity: resamples 5",
            "sensitivity",
            [*sens, "-m", "image+text", "--benchmark", "cirr", "--resamples", "5"],
            fragment="resamples",
        )
    )
    # ---------------------------------------------------------------- leaderboard
    add(Case("tools leaderboard: --format xlsx", "leaderboard", [*LB, "--format", "xlsx"], fragment="xlsx"))
    add(Case("tools leaderboard: --columns R@1,R@1", "leaderboard", [*LB, "--columns", "R@1,R@1"], fragment="R@1"))
    add(Case("tools leaderboard: --columns only commas", "leaderboard", [*LB, "--columns", ",,"], fragment="--columns"))
    add(Case("tools leaderboard: --chart a folder", "leaderboard", [*LB, "--chart", "CIRR"], fragment="CIRR"))
    add(
        Case(
            "tools leaderboard: --chart read-only",
            "leaderboard",
            [*LB, "--chart", "ro/c.png"],
            fragment="ro/c.png",
            setup=ro,
        )
    )
    add(
        Case(
            "tools leaderboard: --chart missing parent",
            "leaderboard",
            [*LB, "--chart", "a/b/c.png"],
            expect="ok",
            fragment="wrote a/b/c.png",
        )
    )
    add(
        Case(
            "tools leaderboard: --chart and --out one path",
            "leaderboard",
            [*LB, "--chart", "x.png", "--out", "x.png"],
            fragment="x.png",
        )
    )
    add(Case("tools leaderboard: --chart .txt", "leaderboard", [*LB, "--chart", "c.txt"], fragment="c.txt"))
    rep = [*LB, "--reported", "rep.yaml"]
    add(
        Case(
            "tools leaderboard reported: rows a mapping",
            "leaderboard",
            rep,
            fragment="rep.yaml",
            setup=_write("rep.yaml", "rows: {a: 1}\n"),
        )
    )
    add(
        Case(
            "tools leaderboard reported: metric a string",
            "leaderboard",
            rep,
            fragment="R@1",
            setup=_reported(ROW + "    cirr: {R@1: abc, R@5: 3.0}\n"),
        )
    )
    add(
        Case(
            "tools leaderboard reported: NaN value",
            "leaderboard",
            rep,
            fragment="R@1",
            setup=_reported(ROW + "    cirr: {R@1: .nan}\n"),
        )
    )
    add(
        Case(
            "tools leaderboard reported: Inf value",
            "leaderboard",
            rep,
            fragment="R@1",
            setup=_reported(ROW + "    cirr: {R@1: .inf}\n"),
        )
    )
    add(
        Case(
            "tools leaderboard reported: value 250",
            "leaderboard",
            rep,
            fragment="R@1",
            setup=_reported(ROW + "    cirr: {R@1: 250}\n"),
        )
    )
    add(
        Case(
            "tools leaderboard reported: unknown benchmark",
            "leaderboard",
            rep,
            fragment="cirrr",
            setup=_reported(ROW + "    cirrr: {R@1: 25.0}\n"),
        )
    )
    add(
        Case(
            "tools leaderboard reported: unknown metric",
            "leaderboard",
            rep,
            fragment="R@7",
            setup=_reported(ROW + "    cirr: {R@7: 25.0}\n"),
        )
    )
    add(
        Case(
            "tools leaderboard reported: duplicate rows",
            "leaderboard",
            rep,
            fragment="rows 0 and 1",
            setup=_reported(ROW + "    cirr: {R@1: 25.0}\n" + ROW + "    cirr: {R@1: 26.0}\n"),
        )
    )
    add(
        Case(
            "tools leaderboard reported: method a list",
            "leaderboard",
            rep,
            fragment="method",
            setup=_reported("  - method: [a, b]\n    backbone: x\n    cirr: {R@1: 25.0}\n"),
        )
    )
    add(
        Case(
            "tools leaderboard reported: split unknown",
            "leaderboard",
            rep,
            fragment="split",
            setup=_reported(ROW + "    split: tset\n    cirr: {R@1: 25.0}\n"),
        )
    )
    add(
        Case(
            "tools leaderboard reported: metric bool",
            "leaderboard",
            rep,
            fragment="R@1",
            setup=_reported(ROW + "    cirr: {R@1: true}\n"),
        )
    )
    add(
        Case(
            "tools leaderboard reported: empty block",
            "leaderboard",
            rep,
            fragment="cirr",
            setup=_reported(ROW + "    cirr: {}\n"),
        )
    )
    add(
        Case(
            "tools leaderboard: --ci with rankings deleted",
            "leaderboard",
            [*LB, "--ci"],
            fragment="rankings",
            setup=lambda ws: _rankings(ws).unlink(),
        )
    )
    add(
        Case(
            "tools leaderboard: --ci with damaged rankings",
            "leaderboard",
            [*LB, "--ci"],
            fragment="rankings",
            setup=_truncate(_rankings),
        )
    )
    add(Case("tools leaderboard: odd files in runs", "leaderboard", LB, fragment=".json", setup=_odd_results))
    add(Case("tools leaderboard: a result copied", "leaderboard", LB, fragment="copy-", setup=_second_row))
    # ---------------------------------------------------------------- submit
    sub = ["submit", "--benchmark", "cirr", "--run", "RUN", *RES]
    add(Case("tools submit: a val run", "submit", sub, fragment="test"))
    add(
        Case(
            "tools submit: benchmark circo for a cirr run",
            "submit",
            ["submit", "--benchmark", "circo", "--run", "RUN", *RES],
            fragment="circo",
        )
    )
    add(
        Case(
            "tools submit: unknown benchmark",
            "submit",
            ["submit", "--benchmark", "cirq", "--run", "RUN", *RES],
            fragment="cirq",
        )
    )
    # ---------------------------------------------------------------- score
    for name, data, frag in [
        ("ranked ids a string", {str(q): "dev-1-0-img1" for q in range(100, 104)}, "100"),
        ("ranked ids integers", {str(q): [1, 2] for q in range(100, 104)}, "100"),
        ("empty object", {}, "no ranking"),
        ("query id not a number", {"abc": ["dev-1-0-img1"]}, "abc"),
        ("ranked ids null", {str(q): None for q in range(100, 104)}, "100"),
        (
            "nested version key",
            {"version": "rc2", "metric": "recall", **{str(q): ["dev-2-0-img0"] for q in range(100, 104)}},
            "query 101",
        ),
    ]:
        add(Case(f"tools score: {name}", "score", SCORE, fragment=frag, setup=_write("r.json", json.dumps(data))))
    add(
        Case(
            "tools score: query twice",
            "score",
            SCORE,
            fragment="twice",
            setup=_write("r.json", '{"100": ["dev-2-0-img0"], "100": ["dev-3-0-img1"]}'),
        )
    )
    add(
        Case(
            "tools score: rankings a folder",
            "score",
            SCORE,
            fragment="r.json",
            setup=lambda ws: (ws / "r.json").mkdir(),
        )
    )
    good = json.dumps({str(q): [f"dev-{q - 98}-0-img{q % 2}"] for q in range(100, 104)})
    add(
        Case(
            "tools score: subset file of other queries",
            "score",
            [*SCORE, "--subset-rankings", "s.json"],
            fragment="subset rankings",
            setup=_all(_write("r.json", good), _write("s.json", json.dumps({"999": ["dev-1-0-img1"]}))),
        )
    )
    add(
        Case(
            "tools score: subset file not JSON",
            "score",
            [*SCORE, "--subset-rankings", "s.json"],
            fragment="s.json",
            setup=_all(_write("r.json", good), _write("s.json", "{")),
        )
    )
    add(
        Case(
            "tools score: subset without ranking file",
            "score",
            [*SCORE, "--subset-rankings", "missing.json"],
            fragment="missing.json",
            setup=_write("r.json", good),
        )
    )
    add(
        Case(
            "tools score: unknown split",
            "score",
            [*SCORE, "--split", "tset"],
            fragment="tset",
            setup=_write("r.json", good),
        )
    )
    # ---------------------------------------------------------------- verify / results migrate
    add(Case("tools verify: data moved", "verify", ["verify", *RES], expect="ok", fragment="--root", setup=_move_data))
    add(Case("tools verify: --root missing", "verify", ["verify", *RES, "--root", "nowhere"], fragment="nowhere"))
    add(
        Case(
            "tools verify: rankings deleted",
            "verify",
            ["verify", *RES],
            expect="exit1",
            fragment="rankings",
            setup=lambda ws: _rankings(ws).unlink(),
        )
    )
    add(
        Case(
            "tools verify: a text file as run",
            "verify",
            ["verify", "corpus/captions.txt", *RES],
            expect="exit1",
            fragment="captions.txt",
        )
    )
    add(Case("tools verify: unknown key", "verify", ["verify", "zzzz", *RES], fragment="zzzz"))
    add(
        Case(
            "tools verify: odd files in runs",
            "verify",
            ["verify", *RES],
            expect="exit1",
            fragment="notes.json",
            setup=_odd_results,
        )
    )
    add(
        Case(
            "tools verify: annotations changed",
            "verify",
            ["verify", *RES],
            expect="exit1",
            fragment="differs",
            setup=lambda ws: _edit_json(
                ws / CAPS,
                lambda d: (
                    [
                        r.__setitem__("target_hard", r["img_set"]["members"][3])
                        or r["target_soft"].clear()
                        or r["target_soft"].__setitem__(r["img_set"]["members"][3], 1.0)
                        for r in d
                    ]
                    and None
                ),
            ),
        )
    )
    add(
        Case(
            "tools migrate: odd files in runs",
            "results",
            ["results", "migrate", *RES],
            fragment="empty.json",
            setup=_odd_results,
        )
    )
    add(
        Case(
            "tools migrate: results dir missing",
            "results",
            ["results", "migrate", "--results-dir", "nope"],
            fragment="nope",
        )
    )
    add(
        Case(
            "tools migrate: results dir a file",
            "results",
            ["results", "migrate", "--results-dir", CAPS],
            fragment="cap.rc2.val.json",
        )
    )
    add(
        Case(
            "tools migrate: damaged current result",
            "results",
            ["results", "migrate", *RES],
            fragment=".json",
            setup=_truncate(_result),
        )
    )
    # ---------------------------------------------------------------- --index
    for name, extra, frag in [
        ("ivf nlist over the gallery", ["--index", "faiss-ivf", "--index-param", "nlist=500"], "nlist"),
        (
            "ivf nprobe over nlist",
            ["--index", "faiss-ivf", "--index-param", "nlist=2", "--index-param", "nprobe=50"],
            "nprobe",
        ),
        ("exact with a param", ["--index", "exact", "--index-param", "nlist=2"], "nlist"),
        ("flat with a param", ["--index", "faiss-flat", "--index-param", "nprobe=2"], "nprobe"),
        ("param without --index", ["--index-param", "nlist=2"], "--index"),
        ("hnsw M 1", ["--index", "faiss-hnsw", "--index-param", "M=1"], "M"),
        ("hnsw M a word", ["--index", "faiss-hnsw", "--index-param", "M=many"], "M"),
        ("hnsw m lowercase", ["--index", "faiss-hnsw", "--index-param", "m=8"], "M"),
        ("recall_sample negative", ["--index", "faiss-ivf", "--index-param", "recall_sample=-1"], "recall_sample"),
        ("param YAML list", ["--index", "faiss-ivf", "--index-param", "nlist=[1,2]"], "nlist"),
        ("param float for int", ["--index", "faiss-ivf", "--index-param", "nlist=2.5"], "nlist"),
        ("index name with case", ["--index", "FAISS-IVF"], "FAISS-IVF"),
    ]:
        add(Case(f"tools index: {name}", "index", _fresh(*extra), fragment=frag))
    add(
        Case(
            "tools index: faiss missing",
            "index",
            _fresh("--index", "faiss-flat"),
            fragment="faiss",
            setup=_fake_faiss,
            env={"PYTHONPATH": "nofaiss"},
        )
    )
    # ---------------------------------------------------------------- --decode
    add(
        Case(
            "tools decode: device with PNGs on cpu",
            "decode",
            _fresh("--decode", "device"),
            expect="same",
            compare="fresh",
        )
    )
    add(Case("tools decode: auto with PNGs", "decode", _fresh("--decode", "auto"), expect="same", compare="fresh"))
    add(
        Case(
            "tools decode: device with a CMYK JPEG",
            "decode",
            _fresh("--decode", "device"),
            expect="ok",
            setup=_cmyk_jpeg,
        )
    )
    add(
        Case(
            "tools decode: auto with a truncated JPEG",
            "decode",
            _fresh("--decode", "auto"),
            fragment="dev-0-0-img0",
            setup=_truncated_jpeg,
        )
    )
    add(
        Case(
            "tools decode: device with a truncated JPEG",
            "decode",
            _fresh("--decode", "device"),
            fragment="dev-0-0-img0",
            setup=_truncated_jpeg,
        )
    )
    # ---------------------------------------------------------------- --seeds
    lin = ["-m", "lincir", "-c", "seeds/seed-{seed}/phi.safetensors"]
    add(Case("tools seeds: 0,0", "seeds", _fresh(*lin, "--seeds", "0,0"), fragment="distinct", setup=_seed_ckpts))
    add(Case("tools seeds: negative", "seeds", _fresh(*lin, "--seeds", "-1"), fragment="-1", setup=_seed_ckpts))
    add(Case("tools seeds: empty", "seeds", _fresh(*lin, "--seeds", ""), fragment="seeds", setup=_seed_ckpts))
    add(Case("tools seeds: spaces", "seeds", _fresh(*lin, "--seeds", " 0 "), expect="ok", setup=_seed_ckpts))
    add(
        Case(
            "tools seeds: partly missing", "seeds", _fresh(*lin, "--seeds", "0,1"), fragment="seed 1", setup=_seed_ckpts
        )
    )
    add(Case("tools seeds: huge", "seeds", _fresh(*lin, "--seeds", "1" * 40), fragment="seed", setup=_seed_ckpts))
    # ---------------------------------------------------------------- torchrun
    add(Case("tools torchrun: RANK alone", "torchrun", _fresh(), expect="same", compare="fresh", env={"RANK": "1"}))
    add(
        Case(
            "tools torchrun: WORLD_SIZE not a number",
            "torchrun",
            _fresh(),
            fragment="WORLD_SIZE",
            env={"WORLD_SIZE": "two"},
        )
    )
    add(
        Case(
            "tools torchrun: RANK not a number",
            "torchrun",
            _fresh(),
            fragment="RANK",
            env={"WORLD_SIZE": "2", "RANK": "x", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"},
        )
    )
    add(
        Case(
            "tools torchrun: RANK >= WORLD_SIZE",
            "torchrun",
            _fresh(),
            fragment="RANK",
            env={"WORLD_SIZE": "2", "RANK": "5", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29998"},
            timeout=90,
        )
    )
    port = _free_port()
    add(
        Case(
            "tools torchrun: rank 1 fails",
            "torchrun",
            _fresh("--batch-size", "2", "--no-cache"),
            fragment="rank 1",
            setup=_other_rank(port),
            env=_dist(port, 0),
            timeout=120,
        )
    )
    port2 = _free_port()
    add(
        Case(
            "tools torchrun: the other rank never starts",
            "torchrun",
            _fresh(),
            fragment="rank",
            env=_dist(port2, 0),
            timeout=200,
        )
    )
    # ---------------------------------------------------------------- cache
    add(
        Case(
            "tools cache ls: a file where a folder belongs",
            "cache",
            ["cache", "ls"],
            fragment="is a file, not a folder",
            setup=_cache_file_for_folder,
        )
    )
    add(Case("tools cache ls: manifest not JSON", "cache", ["cache", "ls"], expect="ok", setup=_damage_manifest))
    add(
        Case(
            "tools cache clear: manifest not JSON",
            "cache",
            ["cache", "clear", "--backbone", TINY],
            expect="ok",
            setup=_damage_manifest,
        )
    )
    add(
        Case(
            "tools cache clear: a file where a folder belongs",
            "cache",
            ["cache", "clear"],
            fragment="is a file, not a folder",
            setup=_cache_file_for_folder,
        )
    )
    add(
        Case(
            "tools cache: CIRBENCH_CACHE a file",
            "cache",
            _fresh(),
            fragment="captions.txt",
            env={"CIRBENCH_CACHE": "corpus/captions.txt"},
        )
    )
    add(
        Case(
            "tools cache ls: CIRBENCH_CACHE a file",
            "cache",
            ["cache", "ls"],
            fragment="captions.txt",
            env={"CIRBENCH_CACHE": "corpus/captions.txt"},
        )
    )
    add(
        Case(
            "tools cache ls: a file among the entries",
            "cache",
            ["cache", "ls"],
            expect="ok",
            setup=_write("cache/features/junk.npy", b"xx"),
        )
    )
    add(
        Case(
            "tools cache clear: a file among the entries",
            "cache",
            ["cache", "clear"],
            expect="ok",
            setup=_write("cache/features/junk.npy", b"xx"),
        )
    )
    add(Case("tools cache ls: manifest a list", "cache", ["cache", "ls"], expect="ok", setup=_manifest("[1, 2]")))
    add(
        Case(
            "tools cache ls: manifest n_images a word",
            "cache",
            ["cache", "ls"],
            expect="ok",
            setup=_manifest('{"n_images": "many", "backbone": "x"}'),
        )
    )
    add(Case("tools cache clear: manifest a list", "cache", ["cache", "clear"], expect="ok", setup=_manifest("[1, 2]")))
    # ---------------------------------------------------------------- LinCIR tools
    add(
        Case(
            "tools lincir prepare: corpus missing",
            "lincir",
            ["lincir", "prepare", "--corpus", "nope.txt"],
            fragment="nope.txt",
        )
    )
    add(
        Case(
            "tools lincir prepare: mode bogus",
            "lincir",
            ["lincir", "prepare", "--corpus", "corpus/captions.txt", "--mode", "bogus"],
            fragment="bogus",
        )
    )
    add(
        Case(
            "tools lincir prepare: processes 0",
            "lincir",
            ["lincir", "prepare", "--corpus", "corpus/captions.txt", "--processes", "0"],
            fragment="processes",
        )
    )
    add(
        Case(
            "tools lincir convert: source missing",
            "lincir",
            ["lincir", "convert", "nope.pt", "out.safetensors"],
            fragment="nope.pt",
        )
    )
    add(
        Case("tools lincir convert: target .txt", "lincir", ["lincir", "convert", "PHI", "out.txt"], fragment="out.txt")
    )
    add(
        Case(
            "tools lincir convert: source a text file",
            "lincir",
            ["lincir", "convert", "corpus/captions.txt", "out.pt"],
            fragment="captions.txt",
        )
    )
    add(Case("tools lincir convert: target = source", "lincir", ["lincir", "convert", "PHI", "PHI"], fragment="phi"))
    add(
        Case(
            "tools lincir convert: target in a read-only folder",
            "lincir",
            ["lincir", "convert", "PHI", "ro/p.pt"],
            fragment="ro/p.pt",
            setup=ro,
        )
    )
    add(
        Case(
            "tools lincir convert: source an empty folder",
            "lincir",
            ["lincir", "convert", "corpus", "out.pt"],
            fragment="corpus",
        )
    )
    tr = [*TRAIN, "--set", "steps=2", "--set", "global_batch=8"]
    add(Case("tools train: --seeds 0,0", "lincir", [*tr, "--out", "s-run", "--seeds", "0,0"], fragment="distinct"))
    add(
        Case(
            "tools train: --seeds and --seed",
            "lincir",
            [*tr, "--out", "s-run", "--seeds", "0,1", "--seed", "3"],
            fragment="--seed",
        )
    )
    add(Case("tools train: --seeds negative", "lincir", [*tr, "--out", "s-run", "--seeds", "-2"], fragment="-2"))
    add(Case("tools train: --resume missing", "lincir", [*TRAIN, "--resume", "nope-run"], fragment="nope-run"))
    add(
        Case(
            "tools train: --resume a file",
            "lincir",
            [*TRAIN, "--resume", "corpus/captions.txt"],
            fragment="captions.txt",
        )
    )
    add(
        Case(
            "tools train: --resume with --seeds",
            "lincir",
            [*TRAIN, "--resume", "phi-run", "--seeds", "0,1"],
            fragment="--seeds",
        )
    )
    add(
        Case(
            "tools train: --resume and --out",
            "lincir",
            [*TRAIN, "--resume", "phi-run", "--out", "other"],
            fragment="--out",
        )
    )
    add(
        Case(
            "tools train: --resume with --overwrite",
            "lincir",
            [*TRAIN, "--resume", "phi-run", "--overwrite"],
            fragment="--overwrite",
        )
    )
    # ---------------------------------------------------------------- shapes / demo
    for name, extra, frag in [
        ("steps 0", ["--steps", "0"], "steps"),
        ("batch 0", ["--batch", "0"], "batch"),
        ("lr negative", ["--lr", "-1"], "lr"),
        ("threads 0", ["--threads", "0"], "threads"),
        ("warmup negative", ["--warmup", "-5"], "warmup"),
        ("eval-every negative", ["--eval-every", "-1"], "eval-every"),
        ("lr nan", ["--lr", "nan"], "lr"),
    ]:
        add(
            Case(
                f"tools shapes pretrain: {name}",
                "shapes",
                ["shapes", "pretrain", "--out", "sc", *extra],
                fragment=frag,
                timeout=60,
            )
        )
    add(
        Case(
            "tools shapes pretrain: --out a file",
            "shapes",
            ["shapes", "pretrain", "--out", CAPS, "--steps", "1"],
            fragment="cap.rc2.val.json",
        )
    )
    add(
        Case(
            "tools shapes accuracy: weights missing",
            "shapes",
            ["shapes", "accuracy", "--weights", "nope"],
            fragment="nope",
        )
    )
    add(
        Case(
            "tools shapes accuracy: weights a folder without them",
            "shapes",
            ["shapes", "accuracy", "--weights", "corpus"],
            fragment="corpus",
        )
    )
    add(
        Case(
            "tools shapes accuracy: weights damaged",
            "shapes",
            ["shapes", "accuracy", "--weights", "sw"],
            fragment="sw",
            setup=_all(_write("sw/model.safetensors", b"junk"), _write("sw/meta.json", "{}")),
        )
    )
    for name, extra, frag in [
        ("threads 0", ["--threads", "0"], "threads"),
        ("seeds a,b", ["--seeds", "a,b"], "a,b"),
        ("seeds 0,0", ["--seeds", "0,0"], "0,0"),
        ("seeds negative", ["--seeds", "-1"], "-1"),
        ("steps 0", ["--steps", "0"], "steps"),
        ("batch 0", ["--batch", "0"], "batch"),
        ("steps negative", ["--steps", "-3"], "steps"),
        ("leaderboard a folder", ["--leaderboard", "CIRR", "--steps", "1"], "CIRR"),
        ("out a file", ["--out", CAPS], "cap.rc2.val.json"),
    ]:
        add(
            Case(
                f"tools demo: {name}",
                "demo",
                ["demo", "--out", "d", "--results-dir", "dres", *extra],
                fragment=frag,
                timeout=90,
            )
        )
    return c
