"""The guarantees on the tool surfaces (perf/fault_cases_tools.py found each case): stats / compare / inspect /
sensitivity, leaderboard and its published rows, score, verify, results migrate, --index, --seeds, torchrun's
environment, the cache commands, the LinCIR tools and shapes pretrain. Each test asserts a known answer: exit 2 and
one line naming the value, or the clean run's output."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest
from cirr_support import make_cirr
from fault_support import one_line_error, run

from cirbench.results import iter_results

TINY = "cirbench-tiny:random"
ROW = "  - method: lincir\n    backbone: ViT-L-14:openai\n    source: paper\n"


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """One clean image-only result on a tiny CIRR val split (evaluated once for the module)."""
    base = tmp_path_factory.mktemp("tools")
    make_cirr(base / "CIRR")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CIRBENCH_CACHE", str(base / "cache"))
        out = run(*_eval(base / "CIRR", base / "results"))
    assert out.exit_code == 0, out.output
    return base


def _eval(root: Path, results: Path, *extra) -> list:
    return [
        "eval", "-m", "image-only", "-b", TINY, "--benchmark", "cirr", "--root", root,
        "--results-dir", results, "--device", "cpu", *extra,
    ]  # fmt: skip


@pytest.fixture
def ws(stored, tmp_path) -> Path:
    """A copy of the stored results this test may damage (their recorded data folder stays the module's)."""
    shutil.copytree(stored / "results", tmp_path / "results")
    return tmp_path


def _key(results: Path) -> str:
    (result,) = iter_results(results)
    return result.run_key


# --------------------------------------------------------------------------------------------- stored runs


def test_an_empty_run_key_matches_no_run(stored):
    results = stored / "results"
    one_line_error(run("stats", "", "--results-dir", results), "no run given")
    one_line_error(run("verify", "", "--results-dir", results), "no run given")


def test_a_result_copied_under_another_name_is_refused(ws):
    path = next(p for p in (ws / "results" / "runs").rglob("*.json") if not p.name.endswith(".gz"))
    shutil.copy(path, path.with_name("copy-" + path.name))
    one_line_error(run("leaderboard", "--results-dir", ws / "results"), "copy-", "remove the copy")


def test_moved_data_names_the_run_and_asks_for_root(tmp_path, one_thread):
    make_cirr(tmp_path / "CIRR")
    results = tmp_path / "results"
    assert run(*_eval(tmp_path / "CIRR", results)).exit_code == 0
    clean = run("stats", _key(results), "--results-dir", results, "--json", "--resamples", "100")
    (tmp_path / "CIRR").rename(tmp_path / "moved")
    one_line_error(run("stats", _key(results), "--results-dir", results), "is not there now", "give --root")
    out = run("verify", "--results-dir", results)
    assert out.exit_code == 0 and "not checkable" in out.output and "give --root" in out.output, out.output
    one_line_error(run("verify", "--results-dir", results, "--root", tmp_path / "nowhere"), "--root", "not a folder")
    again = run(
        "stats", _key(results), "--results-dir", results, "--json", "--resamples", "100", "--root", tmp_path / "moved"
    )
    assert again.exit_code == 0 and again.output == clean.output


def test_leaderboard_ci_refuses_damaged_rankings(ws):
    path = next((ws / "results" / "runs").rglob("*.rankings.json.gz"))
    path.write_bytes(path.read_bytes()[:40])
    one_line_error(run("leaderboard", "--results-dir", ws / "results", "--ci", "--resamples", "100"), "rankings")


def test_migrate_refuses_a_results_folder_that_is_not_there(tmp_path):
    one_line_error(run("results", "migrate", "--results-dir", tmp_path / "nope"), "does not exist")


# --------------------------------------------------------------------------------------------- output files


def test_output_files_are_checked_before_any_work(stored, tmp_path):
    results, key = stored / "results", _key(stored / "results")
    same = tmp_path / "t.out"
    one_line_error(run("inspect", key, "--results-dir", results, "--csv", same, "--json", same), "same file")
    assert not same.exists()
    one_line_error(run("inspect", key, "--results-dir", results, "--grid", tmp_path), "Is a directory (EISDIR)")
    one_line_error(run("leaderboard", "--results-dir", results, "--chart", tmp_path / "c.txt"), "ending .png")
    png = tmp_path / "x.png"
    one_line_error(run("leaderboard", "--results-dir", results, "--chart", png, "--out", png), "same file")
    (tmp_path / "file").write_text("x")
    one_line_error(run("leaderboard", "--results-dir", results, "--out", tmp_path / "file" / "lb.md"), "(ENOTDIR)")
    sens = ["sensitivity", "-m", "image-only", "-b", TINY, "--benchmark", "cirr", "--root", stored / "CIRR"]
    sens += ["--device", "cpu", "--results-dir", tmp_path / "fresh"]
    one_line_error(run(*sens, "--out", tmp_path), f"cannot write {tmp_path}: Is a directory")
    one_line_error(run(*sens, "--metric", "R@7"), "R@7", "not a metric of cirr")
    assert not (tmp_path / "fresh").exists()  # refused before anything was evaluated


@pytest.mark.parametrize(
    "columns, fragment", [("R@1,R@1", "R@1 twice"), (",,", "names no column"), ("", "names no column")]
)
def test_leaderboard_columns_name_each_column_once(stored, columns, fragment):
    one_line_error(run("leaderboard", "--results-dir", stored / "results", "--columns", columns), fragment)


@pytest.mark.parametrize(
    "rows, fragment",
    [
        (ROW + "    cirr: {R@1: abc, R@5: 3.0}\n", "must be a number"),
        (ROW + "    cirr: {R@1: .nan}\n", "not a percentage"),
        (ROW + "    cirr: {R@1: -.inf}\n", "not a percentage"),
        (ROW + "    cirr: {R@1: 250}\n", "not a percentage"),
        (ROW + "    cirr: {R@1: true}\n", "must be a number"),
        (ROW + "    cirr: {}\n", "give its metrics"),
        (ROW + "    cirr: 25.0\n", "give its metrics"),
        (ROW + "    cirrr: {R@1: 25.0}\n", "did you mean 'cirr'"),
        (ROW + "    cirr: {R@7: 25.0}\n", "no metric 'R@7'"),
        (ROW + "    split: tset\n    cirr: {R@1: 25.0}\n", "tset"),
        ("  - method: [a, b]\n    backbone: x\n    cirr: {R@1: 25.0}\n", "'method' must be"),
        (ROW + "    cirr: {R@1: 25.0}\n" + ROW + "    cirr: {R@1: 26.0}\n", "rows 0 and 1"),
    ],
)
def test_bad_published_rows_are_one_line(tmp_path, rows, fragment):
    (tmp_path / "rep.yaml").write_text("rows:\n" + rows)
    out = run("leaderboard", "--results-dir", tmp_path / "none", "--reported", tmp_path / "rep.yaml")
    one_line_error(out, "rep.yaml", fragment)


def test_the_shipped_published_rows_still_load(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    for name in ("results/reported.yaml", "tests/fixtures/reported_small.yaml"):
        out = run("leaderboard", "--results-dir", tmp_path, "--reported", repo / name)
        assert out.exit_code == 0 and "| lincir" in out.output, out.output


# --------------------------------------------------------------------------------------------- score, index, seeds


def test_a_query_twice_in_a_rankings_file_is_refused(stored, tmp_path):
    (tmp_path / "r.json").write_text('{"100": ["dev-2-0-img0"], "100": ["dev-3-0-img1"]}')
    out = run("score", "--rankings", tmp_path / "r.json", "--benchmark", "cirr", "--root", stored / "CIRR")
    one_line_error(out, "r.json", "'100' appears twice")


def test_an_ambiguous_subset_names_the_query_id_and_the_flag(stored, tmp_path):
    """The metric functions number queries by position; the line names the query id (101, the second query)."""
    (tmp_path / "r.json").write_text(json.dumps({str(q): ["dev-2-0-img0"] for q in range(100, 104)}))
    out = run("score", "--rankings", tmp_path / "r.json", "--benchmark", "cirr", "--root", stored / "CIRR")
    one_line_error(out, "query 101: the full ranking is truncated", "--subset-rankings")


def test_an_image_ranked_twice_is_named_before_any_metric(stored, tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({str(q): ["dev-1-0-img1", "dev-1-0-img1"] for q in range(100, 104)}))
    out = run("score", "--rankings", tmp_path / "r.json", "--benchmark", "cirr", "--root", stored / "CIRR")
    one_line_error(out, "query 100: ranks dev-1-0-img1 more than once")


def test_inspect_rows_below_zero_is_refused(stored):
    one_line_error(
        run("inspect", _key(stored / "results"), "--results-dir", stored / "results", "--rows", "-3"), "--rows"
    )


def test_nprobe_above_an_explicit_nlist_is_refused(stored, tmp_path):
    params = ["--index", "faiss-ivf", "--index-param", "nlist=2", "--index-param", "nprobe=50"]
    out = run(*_eval(stored / "CIRR", tmp_path / "r", *params))
    one_line_error(out, "nprobe=50 is more than nlist=2")


@pytest.mark.parametrize("seeds", ["-1", "4294967296"])
def test_seeds_outside_the_seed_range_are_refused(tmp_path, seeds):
    one_line_error(run("demo", "--out", tmp_path / "d", "--seeds", seeds), seeds, "is not in [0, 4294967295]")


# --------------------------------------------------------------------------------------------- torchrun environment


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a whole number >= 1"),
        ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK='5' is not a whole number in [0, 1]"),
        ({"WORLD_SIZE": "2", "RANK": "x"}, "RANK='x'"),
        ({"WORLD_SIZE": "2", "MASTER_PORT": "99999"}, "MASTER_PORT='99999'"),
    ],
)
def test_torchrun_variables_that_cannot_be_are_one_line(stored, tmp_path, monkeypatch, env, fragment):
    base = {"RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    for name, value in {**base, **env}.items():
        monkeypatch.setenv(name, value)
    one_line_error(run(*_eval(stored / "CIRR", tmp_path / "r")), fragment)


def test_a_rank_whose_peers_never_start_stops_with_one_line(stored, tmp_path, monkeypatch):
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    env |= {"MASTER_PORT": str(_free_port()), "CIRBENCH_JOIN_TIMEOUT_S": "2"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    start = time.monotonic()
    out = run(*_eval(stored / "CIRR", tmp_path / "r"))
    assert time.monotonic() - start < 30
    one_line_error(out, "rank 0 of 2 could not meet the other ranks", "within 2 s", "--nproc_per_node 2")


# --------------------------------------------------------------------------------------------- cache, LinCIR, shapes


def test_cache_commands_refuse_a_cache_that_is_a_file(tmp_path, monkeypatch):
    (tmp_path / "cachefile").write_text("x")
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cachefile"))
    one_line_error(run("cache", "ls"), "cachefile", "is a file")
    one_line_error(run("cache", "clear"), "cachefile", "is a file")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "features").write_text("x")  # a file where the entries' folder belongs
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))
    one_line_error(run("cache", "ls"), "features", "is a file, not a folder")


def test_lincir_tools_refuse_what_cannot_work(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": __import__("torch").zeros(2)}, str(tmp_path / "phi.safetensors"))
    phi = tmp_path / "phi.safetensors"
    before = phi.read_bytes()
    one_line_error(run("lincir", "convert", phi, phi), "is the phi being converted")
    assert phi.read_bytes() == before
    one_line_error(run("lincir", "convert", phi, tmp_path / "out.txt"), "write .pt")
    one_line_error(run("lincir", "prepare", "--corpus", phi, "--processes", "0"), "--processes")


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--lr", "nan"], "--lr nan"),
        (["--lr", "-1"], "--lr -1.0"),
        (["--weight-decay", "-0.5"], "--weight-decay"),
        (["--threads", "0"], "--threads"),
        (["--warmup", "-5"], "--warmup"),
        (["--eval-every", "-1"], "--eval-every"),
        (["--steps", "0"], "--steps"),
        (["--batch", "0"], "--batch"),
    ],
)
def test_shapes_pretrain_settings_out_of_range_are_one_line(tmp_path, flags, fragment):
    one_line_error(run("shapes", "pretrain", "--out", tmp_path / "sc", *flags), fragment)
    assert not (tmp_path / "sc" / "model.safetensors").exists()


def test_resume_with_another_out_is_refused(tmp_path):
    from lincir_support import write_corpus

    corpus = write_corpus(tmp_path)
    train = ["train", "lincir", "-b", TINY, "--corpus", corpus, "--threads", "1", "--set", "global_batch=8"]
    assert run(*train, "--out", tmp_path / "run", "--set", "steps=1").exit_code == 0
    one_line_error(run(*train, "--resume", tmp_path / "run", "--out", tmp_path / "other"), "leave out --out")
    assert not (tmp_path / "other").exists()
