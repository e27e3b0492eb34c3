"""Guarantee 6, one error boundary: OS errors on any read or write, interrupts, unexpected exceptions and a failing
torchrun rank all end as one line (naming the path or the rank, the cause and the fix), never a traceback, and
nothing half-written stays behind. The boundary is ``cirbench.commands.boundary``; ``cirbench.io`` names the file."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cirr_support import make_cirr
from fault_support import one_line_error, run
from lincir_support import torchrun_cirbench, write_corpus

ROOT = Path(__file__).resolve().parents[1]
EVAL = ["eval", "-m", "image+text", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--device", "cpu"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """A results folder holding one finished CIRR run (what `leaderboard` reads)."""
    folder = tmp_path_factory.mktemp("stored")
    out = run(*EVAL, "--root", make_cirr(folder / "CIRR"), "--results-dir", folder / "results")
    assert out.exit_code == 0, out.output
    return folder / "results"


@contextlib.contextmanager
def mounted(folder: Path, *options: str):
    """A small tmpfs at ``folder`` (skipped where mounting is not allowed: not root, a sandbox, CI)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(folder)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip() or done.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _leftovers(folder: Path) -> list[str]:
    """Temporary or half-written files: anything but cirbench's lock files and the filler."""
    return sorted(
        p.name for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock") and p.name != "fill"
    )


# --------------------------------------------------------------------------------------------- OS errors


@pytest.mark.parametrize(
    ("code", "fragments"),
    [
        (errno.ENOSPC, ("No space left on device (ENOSPC)", "free space")),
        (errno.EROFS, ("Read-only file system (EROFS)", "choose a writable folder")),
        (errno.EACCES, ("Permission denied (EACCES)", "fix its permissions")),
        (errno.EIO, ("(EIO)", "the disk or network file system failed")),
    ],
)
def test_an_os_error_while_writing_names_the_final_path_and_the_fix(tmp_path, stored, monkeypatch, code, fragments):
    """Any write failure (raised where the bytes reach the disk) is one line naming the file asked for, not the
    temporary one, and leaves nothing behind. Runs everywhere: the fault is injected, not mounted."""
    real = os.fsync

    def failing(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path / "out")):
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(os, "fsync", failing)
    target = tmp_path / "out" / "board.md"
    one_line_error(run("leaderboard", "--results-dir", stored, "--out", target), f"cannot write {target}: ", *fragments)
    assert _leftovers(tmp_path / "out") == []


def test_a_folder_where_the_output_file_belongs_is_one_line(tmp_path, stored):
    (tmp_path / "board.md").mkdir()
    out = run("leaderboard", "--results-dir", stored, "--out", tmp_path / "board.md")
    one_line_error(out, f"cannot write {tmp_path / 'board.md'}: Is a directory (EISDIR)", "remove or rename it")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.md"]


def test_a_full_disk_ends_eval_and_leaderboard_in_one_line_with_nothing_half_written(tmp_path, stored, monkeypatch):
    with mounted(tmp_path / "disk", "size=8k") as disk:
        (disk / "fill").write_bytes(b"\0" * 7000)
        results, root = disk / "results", make_cirr(tmp_path / "CIRR")
        out = run(*EVAL, "--root", root, "--results-dir", results, "--json")
        one_line_error(out, f"cannot write {results / 'runs'}", "No space left on device (ENOSPC)", "free space")
        monkeypatch.setenv("CIRBENCH_CACHE", str(disk / "cache"))  # the feature cache on the full disk
        out = run(*EVAL, "--root", root, "--results-dir", tmp_path / "results", "--json")
        one_line_error(out, f"cannot write {disk / 'cache' / 'features'}", "No space left on device (ENOSPC)")
        board = disk / "board.md"
        out = run("leaderboard", "--results-dir", stored, "--out", board)
        one_line_error(out, f"cannot write {board}: No space left on device (ENOSPC)", "free space")
        assert _leftovers(disk) == []


def test_a_read_only_folder_for_leaderboard_out_is_one_line(tmp_path, stored):
    with mounted(tmp_path / "ro", "ro", "size=8k") as folder:
        for target in (folder / "board.md", folder / "sub" / "board.md"):
            out = run("leaderboard", "--results-dir", stored, "--out", target)
            one_line_error(out, "cannot write ", "Read-only file system (EROFS)", "choose a writable folder")


def test_a_truncated_rankings_file_names_the_file(tmp_path, stored):
    """A cut rankings file is one line naming it (its digest, or ``io.read_json``'s ValueError for gzip's EOF)."""
    (rankings,) = stored.rglob("*.rankings.json.gz")
    copy = tmp_path / "results"
    import shutil

    shutil.copytree(stored, copy)
    (cut,) = copy.rglob("*.rankings.json.gz")
    cut.write_bytes(rankings.read_bytes()[:-20])
    out = run("stats", str(cut).replace(".rankings.json.gz", ".json"), "--results-dir", copy)
    one_line_error(out, str(cut), "damaged")


def test_read_json_names_a_cut_gzip_as_a_value_error(tmp_path):
    """Readers catch ``(OSError, ValueError)`` and name the file; gzip's ``EOFError`` used to slip past them."""
    from cirbench.io import atomic_write_json_gz, read_json

    path = atomic_write_json_gz(tmp_path / "r.json.gz", {"q": list(range(100))})
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match="truncated or damaged gzip data"):
        read_json(path)


# --------------------------------------------------------------------------------------------- other endings


def _explode(error: BaseException):
    def explode(*_args, **_kwargs):
        raise error

    return explode


def test_interrupts_and_unexpected_errors_are_one_line(stored, monkeypatch):
    import cirbench.leaderboard as lb

    monkeypatch.setattr(lb, "collect_entries", _explode(KeyboardInterrupt()))
    one_line_error(run("leaderboard", "--results-dir", stored), "interrupted; rerun the same command", code=130)
    monkeypatch.setattr(lb, "collect_entries", _explode(ZeroDivisionError("division by zero")))
    out = run("leaderboard", "--results-dir", stored)
    one_line_error(out, "internal error (ZeroDivisionError: division by zero) in `cirbench leaderboard`")
    assert "CIRBENCH_TRACEBACK=1" in out.output
    monkeypatch.setenv("CIRBENCH_TRACEBACK", "1")
    assert isinstance(run("leaderboard", "--results-dir", stored).exception, ZeroDivisionError)


def test_usage_errors_are_one_line_naming_the_flag_and_the_help():
    one_line_error(run("leaderboard", "--no-such-flag"), "No such option: --no-such-flag", "`cirbench leaderboard -h`")
    one_line_error(run("stats", "abc", "--resamples", "5"), "'--resamples'", "greater than or equal to 100")
    one_line_error(run("eval", "--batch-size", "many"), "'--batch-size'", "valid integer")
    one_line_error(run("score", "--rankings", "r.json"), "Missing option '--benchmark'")


@pytest.mark.parametrize("entry", [[sys.executable, "-m", "cirbench"], ["cirbench"]])
def test_both_entry_points_go_through_the_boundary(tmp_path, stored, entry):
    if entry == ["cirbench"] and not _on_path("cirbench"):
        pytest.skip("the cirbench script is not installed")
    (tmp_path / "board.md").mkdir()
    command = [*entry, "leaderboard", "--results-dir", str(stored), "--out", str(tmp_path / "board.md")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr.strip().splitlines() == [
        f"error: cannot write {tmp_path / 'board.md'}: Is a directory (EISDIR); a folder is there where a file is "
        "expected: remove or rename it, or give a file's path"
    ]


def _on_path(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


# --------------------------------------------------------------------------------------------- errors that say why


def test_a_limit_run_has_stats_and_compare_names_both_query_sets(tmp_path, stored):
    """`stats` of a --limit run scores its first N queries (it used to fail on the others); comparing it with a full
    run says what each is and what to compare instead."""
    import shutil

    results = tmp_path / "results"
    shutil.copytree(stored, results)
    (full,) = results.rglob("*.json")
    root = make_cirr(tmp_path / "CIRR")  # the same generated split the stored run used
    assert run(*EVAL, "--root", root, "--results-dir", results, "--limit", "2", "--json").exit_code == 0
    (limited,) = [p for p in results.rglob("*.json") if p != full]
    assert run("stats", limited, "--results-dir", results, "--json", "--resamples", "100").exit_code == 0
    one_line_error(
        run("compare", limited, full, "--results-dir", results),
        "A is a --limit 2 run (2 of 4 queries), B a full run (4 queries); compare runs of the same query set",
    )


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--checkpoint", "runs/x/seed-{seed}"], ("holds {seed} but --seeds is not given", "add --seeds")),
        (["--checkpoint", "runs/x", "--seeds", "0,1"], ("--checkpoint 'runs/x' has no {seed}", "put {seed} where")),
        (["--seeds", "0,1"], ("but no --checkpoint",)),
        (["--checkpoint", "runs/x/seed-{seed}", "--seeds", "0,x"], ("--seeds '0,x' is not a comma-separated",)),
    ],
)
def test_seed_flags_that_do_not_fit_are_one_line_with_the_fix(tmp_path, flags, fragments):
    args = ["eval", "-m", "lincir", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--root", tmp_path]
    one_line_error(run(*args, "--results-dir", tmp_path / "r", *flags), *fragments)


def test_a_seed_without_its_checkpoint_is_named_before_any_work(tmp_path):
    (tmp_path / "seed-0").mkdir()
    args = ["eval", "-m", "lincir", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--root", tmp_path]
    out = run(*args, "--checkpoint", tmp_path / "seed-{seed}", "--seeds", "0,1")
    one_line_error(out, f"1 of 2 checkpoints do not exist (seed 1: {tmp_path / 'seed-1'})")


# --------------------------------------------------------------------------------------------- torchrun


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_failing_eval_rank_stops_every_rank_with_one_line_each(tmp_path):
    """Two gloo ranks; only rank 1 encodes the truncated image. Rank 1 names the file, rank 0 names rank 1 (not
    gloo's traceback); both exit 2, quickly."""
    root = make_cirr(tmp_path / "CIRR")
    bad = root / "dev" / "dev-10-0-img0.png"  # row 10 of 12: rank 1's shard
    bad.write_bytes(bad.read_bytes()[:60])
    port = _free_port()
    command = [sys.executable, "-m", "cirbench", *EVAL, "--root", str(root), "--results-dir", str(tmp_path / "r")]
    command += ["--batch-size", "2", "--no-cache", "--json"]
    procs = []
    start = time.monotonic()
    for rank in (0, 1):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank)}
        env |= {"LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [proc.communicate(timeout=120) for proc in procs]
    assert time.monotonic() - start < 120
    assert [proc.returncode for proc in procs] == [2, 2], outs
    assert outs[0][1].strip().splitlines() == ["error: rank 0 stopped because rank 1 failed (see its error above)"]
    (line,) = outs[1][1].strip().splitlines()
    assert line.startswith(f"error: rank 1: cannot decode image 'dev-10-0-img0' at {bad}"), line
    assert outs[0][0] == outs[1][0] == ""
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("*.json"))


@pytest.mark.slow
def test_a_full_disk_on_one_training_rank_stops_both_with_one_line_each(tmp_path):
    """torchrun, 2 gloo ranks; rank 0 writes the run folder on a full tmpfs: it names ENOSPC and the file, rank 1
    says rank 0 stopped it; torchrun reports exit code 2 for both."""
    corpus = write_corpus(tmp_path)
    with mounted(tmp_path / "disk", "size=160k") as disk:
        args = ["train", "lincir", "--backbone", "cirbench-tiny:random", "--corpus", str(corpus), "--out"]
        args += [str(disk / "run"), "--steps", "3", "--global-batch", "8", "--buckets", "2", "--threads", "1"]
        args += ["--quiet", "--device", "cpu"]
        proc = torchrun_cirbench(args)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 2, proc.stderr[-3000:]
        assert errors[0].startswith(f"error: rank 0: cannot write {disk / 'run'}"), errors
        assert "No space left on device (ENOSPC)" in errors[0]
        assert errors[1] == "error: rank 1 stopped because rank 0 failed (see its error above)"
        assert "[rank0]:" not in proc.stderr and "[rank1]:" not in proc.stderr  # no rank printed a traceback
        assert proc.stderr.count("exitcode  : 2 ") == 2, proc.stderr[-3000:]
        assert not [p for p in disk.rglob("*.tmp")]


@pytest.mark.slow
def test_a_rank_failing_before_the_group_is_joined_does_not_leave_the_others_silent(tmp_path):
    """Rank 1 refuses its flags before joining; rank 0 is blocked inside torch's rendezvous, where no Python signal
    handler runs. torchrun's SIGTERM reaches it through the boundary's watcher: one line each, within seconds (it
    used to be a silent SIGKILL after 30 s)."""
    script = tmp_path / "one_rank_refuses.py"
    script.write_text(
        "import os, sys\n"
        "from cirbench.cli import main\n"
        "if os.environ['RANK'] == '1':\n"
        "    sys.argv[1:] = ['eval', '--limit', '0', '-m', 'x', '-b', 'y', '--benchmark', 'cirr']\n"
        "main()\n"
    )
    root = make_cirr(tmp_path / "CIRR")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    command += [*EVAL, "--root", str(root), "--results-dir", str(tmp_path / "r"), "--json"]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert time.monotonic() - start < 25, done.stderr[-2000:]  # torchrun's SIGKILL would come after 30 s
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: rank 1: --limit 0: give a positive number of queries (e.g. --limit 20)",
        "error: rank 0 stopped: torchrun ended it (SIGTERM) while it waited for the other ranks, most likely because "
        "one of them failed (see its error above)",
    ], done.stderr[-3000:]
    assert done.stderr.count("exitcode  : 2 ") == 2 and "[rank0]:" not in done.stderr
