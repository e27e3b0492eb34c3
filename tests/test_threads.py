"""The one thread rule (``cirbench/threads.py``): its answers on known facts, and that every command that runs torch
(``train lincir``, ``eval``, the demo, the perf scripts) uses it, prints it, records it and shows it in ``-h``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from lincir_support import tiny_config, write_corpus
from typer.testing import CliRunner

from cirbench import threads
from cirbench.threads import ThreadChoice, rule

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args: object):
    from cirbench.cli import app

    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    ("requested", "environ", "cores", "load", "expected"),
    [
        (3, {"OMP_NUM_THREADS": "2"}, 8, 0.0, ThreadChoice(3, "--threads")),
        (None, {"OMP_NUM_THREADS": "2"}, 8, 7.0, ThreadChoice(2, "OMP_NUM_THREADS=2; --threads overrides")),
        (None, {}, 2, 1.8, ThreadChoice(1, "2 cores, load 1.8: 0 free, at least 1; --threads overrides")),
        (None, {}, 2, 0.4, ThreadChoice(2, "2 cores, load 0.4: 2 free; --threads overrides")),
        (None, {}, 8, 2.5, ThreadChoice(5, "8 cores, load 2.5: 5 free; --threads overrides")),
        (None, {"OMP_NUM_THREADS": "0"}, 4, 0.0, ThreadChoice(4, "4 cores, load 0.0: 4 free; --threads overrides")),
        (None, {"OMP_NUM_THREADS": "x"}, 4, None, ThreadChoice(4, "4 cores, load unknown; --threads overrides")),
        (
            None,
            {"LOCAL_WORLD_SIZE": "4"},
            16,
            2.2,
            ThreadChoice(3, "16 cores, load 2.2: 14 free, shared by 4 processes; --threads overrides"),
        ),
    ],
)
def test_the_rule_on_known_facts(requested, environ, cores, load, expected):
    assert rule(requested, environ, cores, load) == expected


@pytest.fixture
def busy_two_cores(monkeypatch):
    """This process on a busy 2-core machine (load 1.8), no OMP_NUM_THREADS; torch's threads restored after."""
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "load_average", lambda: 1.8)
    yield "threads: 1 (2 cores, load 1.8: 0 free, at least 1; --threads overrides)"
    torch.set_num_threads(before)


def test_choose_and_the_demo_read_this_process_by_the_same_rule(busy_two_cores):
    from cirbench.demo import choose_threads

    assert threads.choose().line() == busy_two_cores
    assert choose_threads(None) == (1, "2 cores, load 1.8: 0 free, at least 1; --threads overrides")
    assert choose_threads(3) == (3, "--threads")
    torch.set_num_threads(2)
    assert threads.use(None) == ThreadChoice(1, busy_two_cores[len("threads: 1 (") : -1])
    assert torch.get_num_threads() == 1


def test_train_lincir_prints_and_records_the_threads_it_chose(tmp_path, busy_two_cores):
    corpus, out = write_corpus(tmp_path), tmp_path / "run"
    args = ["train", "lincir", "-b", "cirbench-tiny:random", "--corpus", corpus, "--out", out, "--steps", "1"]
    result = cli(*args, "--global-batch", "8", "--no-allow-download")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines().count(busy_two_cores) == 1  # once, as the work starts
    assert json.loads((out / "train_meta.json").read_text())["config"]["threads"] == 1
    assert json.loads((out / "config.json").read_text())["threads"] == 1
    again = cli("train", "lincir", "--resume", out, "--steps", "2", "--threads", "2")
    assert again.exit_code == 0, again.output
    assert "threads: 2 (--threads)" in again.stderr.splitlines()
    assert json.loads((out / "train_meta.json").read_text())["config"]["threads"] == 2
    quiet = cli("train", "lincir", "--resume", out, "--steps", "3", "--threads", "2", "--quiet")
    assert quiet.exit_code == 0 and "threads:" not in quiet.stderr  # --quiet: no progress, no thread line
    assert threads._PENDING == []  # forgotten when the command ended: no later command says it


@pytest.mark.usefixtures("one_thread")
def test_a_run_built_in_code_records_the_threads_torch_had(tmp_path):
    from cirbench.lincir.trainer import train

    result = train(tiny_config(write_corpus(tmp_path), tmp_path / "run", threads=None, steps=1))
    assert result.meta["config"]["threads"] == 1  # not null: what ran


def test_eval_prints_and_records_its_threads(tmp_path, cirr_split, busy_two_cores):
    from cirbench.results import iter_results

    args = ["eval", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--root", cirr_split]
    result = cli(*args, "--split", "val", "--results-dir", tmp_path / "results", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert busy_two_cores in result.stderr.splitlines()
    [stored] = list(iter_results(tmp_path / "results"))
    assert stored.run_settings["threads"] == 1
    reused = cli(*args, "--split", "val", "--results-dir", tmp_path / "results", "--device", "cpu", "--threads", "1")
    assert reused.exit_code == 0 and "threads:" not in reused.stderr  # nothing computed: nothing to say
    bad = cli(*args, "--split", "nope", "--results-dir", tmp_path / "results")
    assert bad.exit_code == 2 and len(bad.output.splitlines()) == 1  # a failed check still ends in one line
    assert threads._PENDING == []


@pytest.mark.parametrize("command", [("train", "lincir"), ("eval",)])
def test_help_shows_how_the_default_is_chosen(command):
    result = cli(*command, "-h")
    assert result.exit_code == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
    assert "--threads" in text and "default: chosen from the free cores" in text


def test_perf_scripts_set_threads_only_through_the_rule():
    """A perf script that sets torch's threads does it with ``cirbench.threads.use``, never on its own."""
    offenders = [path.name for path in sorted((ROOT / "perf").glob("*.py")) if "set_num_threads(" in path.read_text()]
    users = {path.name for path in (ROOT / "perf").glob("*.py") if "from cirbench.threads import" in path.read_text()}
    assert offenders == []
    assert {"lincir_train_speed.py", "gallery_encoding.py", "mllm_embedder_speed.py", "interface_speed.py"} <= users
