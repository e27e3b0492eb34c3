"""The CLI's one error boundary: whatever leaves a command ends as one line (``error: ...``) and an exit code.

Why one place: every command inherits it, old and new. User errors print their message (exit 2); OS errors name
the path, the cause and the fix by errno (exit 2); Ctrl-C and SIGTERM say how to resume (130, 143); anything else
is one line naming the exception, and ``CIRBENCH_TRACEBACK=1`` shows its traceback. Under torchrun every line names
its rank, a failing rank tells the others through the group's store (``cirbench.torchrun``), and a rank whose
collective then breaks says which rank stopped it instead of printing the backend's traceback. Typer's own usage
errors, help and exits pass through unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import typer

from cirbench import doctor, torchrun
from cirbench.errors import UserError

TRACEBACK_ENV = "CIRBENCH_TRACEBACK"
RESUME = "rerun the same command to resume"
_ENDING = False  # set once an error is being turned into its line
_LAST_WORD = threading.Lock()  # held by whoever prints this process's one line
GRACE = 2.0  # seconds a SIGTERM waits for the main thread before the watcher speaks for it
# Typer's own (vendored click) usage errors, help and exits print as they always did.
_PASS_THROUGH = (typer.exceptions.TyperException, typer.Exit, typer.Abort, SystemExit, GeneratorExit)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread under torchrun so cleanups run and the rank can say why it stopped."""


@dataclass(frozen=True)
class Ending:
    """The one line a command ends with (without ``error: ``) and its exit code."""

    message: str
    code: int = 2


_WRITE_ONLY = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_FIXES = {
    errno.ENOSPC: "no space is left on that disk: free space (or write elsewhere: --results-dir, --out, "
    "CIRBENCH_CACHE), then " + RESUME,
    errno.EDQUOT: "your disk quota is used up: free space or write elsewhere, then " + RESUME,
    errno.EROFS: "that file system is read-only: choose a writable folder",
    errno.EACCES: "permission denied: choose a folder you may use, or fix its permissions",
    errno.EPERM: "permission denied: choose a folder you may use, or fix its permissions",
    errno.EISDIR: "a folder is there where a file is expected: remove or rename it, or give a file's path",
    errno.ENOTDIR: "a file is there where a folder is expected: remove or rename it, or give another path",
    errno.ENOENT: "it does not exist: check the path",
    errno.EEXIST: "it already exists: remove it or choose another path",
    errno.ENAMETOOLONG: "the name is too long: use a shorter path",
    errno.ELOOP: "symbolic links loop there: fix the link",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer --workers",
    errno.ENFILE: "too many open files on this system: close some programs or use fewer --workers",
    errno.EIO: "the disk or network file system failed: check it, then " + RESUME,
    errno.ENOMEM: "out of memory: use a smaller --batch-size or fewer --workers",
    errno.EFBIG: "the file is larger than that file system allows: write elsewhere",
}


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def os_error_line(error: OSError, command: str) -> str:
    """``cannot write PATH: STRERROR; FIX`` (the operation is the one ``cirbench.io`` recorded, else the errno's)."""
    code = error.errno
    operation = getattr(error, "cirbench_operation", None) or ("write" if code in _WRITE_ONLY else "use")
    cause = _one_line(error.strerror or str(error) or type(error).__name__, 160)
    fix = _FIXES.get(code, "check the path and its disk, then rerun")  # type: ignore[arg-type]
    name = errno.errorcode.get(code, str(code)) if code is not None else type(error).__name__
    if error.filename is not None:
        where = os.fsdecode(error.filename)
        return f"cannot {operation} {_one_line(where, 1000)}: {cause} ({name}); {fix}"
    return f"a file operation of `cirbench {command}` failed: {cause} ({name}); {fix}"


def _internal(error: BaseException, command: str) -> str:
    what = _one_line(str(error), 160)
    detail = f"{type(error).__name__}: {what}" if what else type(error).__name__
    return (
        f"internal error ({detail}) in `cirbench {command}`; rerun with {TRACEBACK_ENV}=1 for the traceback and "
        "report it"
    )


def _backend(error: BaseException) -> str:
    """The backend's own words, short: gloo's ``[.../pair.cc:561] Connection closed by peer [...]. This is ...``."""
    text = " ".join(str(error).split())
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    return _one_line(text.split(". ")[0], 120) or type(error).__name__


def ending(error: BaseException, command: str) -> Ending | None:
    """The line and exit code for ``error``, or None to let it through (click's usage errors and exits, a stdout
    pipe closed by the reader, which click handles)."""
    global _ENDING
    if isinstance(error, _PASS_THROUGH):
        return None
    if isinstance(error, BrokenPipeError) and error.filename is None:
        return None
    _ENDING = True  # a SIGTERM from now on waits for this line and exit (see ``sigterm_raises``)
    me = torchrun.from_env()
    if me is not None and (isinstance(error, Terminated) or torchrun.is_backend_failure(error)):
        failed = torchrun.failed_ranks(me)
        if failed:
            return Ending(f"rank {me.rank} stopped because rank {failed[0]} failed (see its error above)")
        if not isinstance(error, Terminated):
            return Ending(
                f"rank {me.rank}: lost contact with the other ranks ({_backend(error)}); see their errors above, "
                "or, if none failed, check the network between them and rerun"
            )
    end = _own(error, command)
    if me is not None:
        end = Ending(f"rank {me.rank}: {end.message}", end.code)
        if end.code == 2:
            torchrun.announce_failure(me.rank, end.message)
    return end


def _own(error: BaseException, command: str) -> Ending:
    if isinstance(error, UserError):
        return Ending(" ".join(str(error).split()) or type(error).__name__)
    if isinstance(error, KeyboardInterrupt):
        return Ending(f"interrupted; {RESUME}", 130)
    if isinstance(error, Terminated):
        return Ending(f"terminated (SIGTERM); {RESUME}", 143)
    if isinstance(error, OSError) and error.errno is not None:
        return Ending(os_error_line(error, command))
    if (install := doctor.known_install_error(error)) is not None:  # a broken install: its fix, not "internal"
        return Ending(install)
    return Ending(_internal(error, command))


def show_traceback(error: BaseException) -> bool:
    """``CIRBENCH_TRACEBACK=1``: re-raise what is not a user error, so its traceback prints."""
    return os.environ.get(TRACEBACK_ENV, "") not in ("", "0") and not isinstance(error, UserError)


def say(end: Ending) -> None:
    """Print the one line and, for a torchrun rank, exit with its code at once. One line per process: the SIGTERM
    watcher below and the main thread never both speak."""
    if not _LAST_WORD.acquire(blocking=False):
        time.sleep(GRACE * 10)  # the watcher is ending this process with its own line
        os._exit(end.code)
    try:
        typer.secho(f"error: {end.message}", err=True, fg="red")
        _leave(end.code)
    finally:
        _LAST_WORD.release()  # not under torchrun: the process goes on (tests run many commands in one)


def _leave(code: int) -> None:
    """A torchrun rank whose error line is out exits at once with ``code``: no teardown of a process group whose
    peers are gone (it can block), and no SIGTERM from torchrun turning the exit code into -15 meanwhile."""
    if torchrun.from_env() is None or torchrun.store() is None:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Under torchrun, SIGTERM (torchrun stops the other ranks when one fails) raises :class:`Terminated` in this
    process, so it can say which rank stopped it; a child that inherited the handler exits quietly.

    A Python handler only runs when the main thread runs Python; one blocked inside torch (joining the group while
    another rank already failed, a collective) never would, and torchrun would SIGKILL it 30 s later without a word.
    So a watcher thread learns of the signal through the wakeup fd and, when the main thread has not started its
    ending within ``GRACE`` seconds, prints this rank's line and exits. While another handler is installed (the
    trainer's graceful stop), the watcher leaves the signal to it."""
    global _ENDING
    _ENDING = False
    me = torchrun.from_env()
    if me is None:
        yield
        return
    owner = os.getpid()

    def handler(signum, _frame):  # type: ignore[no-untyped-def]
        if os.getpid() != owner:
            os._exit(128 + signum)
        if not _ENDING:  # else the line being written is this rank's last word; it exits right after
            raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_fd, handler, me), name="cirbench-sigterm", daemon=True).start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGTERM, previous)
        os.close(write_fd)  # the watcher reads EOF and ends


def _watch(read_fd: int, handler: object, me: torchrun.Dist) -> None:
    try:
        while data := os.read(read_fd, 64):
            if signal.SIGTERM not in data or signal.getsignal(signal.SIGTERM) is not handler:
                continue
            deadline = time.monotonic() + GRACE
            while not _ENDING and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _ENDING and _LAST_WORD.acquire(blocking=False):
                end = _stopped(me)
                sys.stderr.write(f"error: {end.message}\n")
                sys.stderr.flush()
                os._exit(end.code)
    finally:
        os.close(read_fd)


def _stopped(me: torchrun.Dist) -> Ending:
    """The line of a rank stopped while blocked inside torch: which rank failed, when the store can say (asked from
    a helper thread, so a store that does not answer cannot keep this rank alive)."""
    found: list[int] = []
    asker = threading.Thread(target=lambda: found.extend(torchrun.failed_ranks(me)), daemon=True)
    asker.start()
    asker.join(GRACE)
    if found:
        return Ending(f"rank {me.rank} stopped because rank {found[0]} failed (see its error above)")
    return Ending(
        f"rank {me.rank} stopped: torchrun ended it (SIGTERM) while it waited for the other ranks, most likely because "
        "one of them failed (see its error above)"
    )
