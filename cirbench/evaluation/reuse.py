"""When a stored result may stand for a new request, and one writer per result.

Identity at reuse. A result is reused only when every identity its numbers depend on still matches:

* in the run key (so a change gives another key, another file, a fresh run): annotations (``annotations_sha256``),
  the backbone's weights (``backbone``: a local file is hashed), the method's checkpoint or texts file
  (``checkpoint_id``), method and protocol options that change numbers, the protocol version, the layout, which
  images ``--skip-missing`` left out, ``--limit``, an approximate ``--index`` and the device decoder. The stored
  ``key_fields`` must equal the ones computed now (a file edited or written by another key scheme is not reused).
* not in the key (it would break every committed key): the images read, ``benchmark.images_sha256``. They are
  identified again as the stored result was, like with like: by (resolved path, size, mtime), a stat per file and no
  read, or by their bytes when the stored result was made with ``--verify``. A benchmark that renders its images
  from its annotation files (``images_generated = True``, shapes) identifies them by that recipe, which the key
  already holds (``annotations_sha256`` hashes the render spec: world hash, seed, renders), so a fresh clone that
  renders them again into its own cache reuses the committed results.

A mismatch is one line (``"images changed since run X: recomputing"``) and the result is computed again and replaced;
where the images cannot be identified now (missing), the split's own one-line error refuses.

One writer. While a result is computed its path is locked (``.<result>.lock`` beside it, a ``filelock``); a second
process asking for the same result is refused in one line (``BusyError``). Under torchrun rank 0 takes the lock and
every rank learns the outcome, so all ranks stop together.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from cirbench.benchmarks.base import Benchmark, BenchmarkSplit
from cirbench.errors import BusyError, UserError, shown
from cirbench.evaluation.distributed import Group, broadcast
from cirbench.evaluation.prepare import image_check, limit_queries, prepare_split
from cirbench.identity import canonical_json
from cirbench.images import content_hash, identity_hash
from cirbench.results import RunResult, check_rankings

log = logging.getLogger("cirbench")


def images_identity(data: BenchmarkSplit, prepared: BenchmarkSplit, skip_missing: bool, verify: bool) -> str:
    """Which image files a run reads: their identities (a stat each), or (``verify``) their bytes."""
    keys = list(prepared.images)
    if verify:
        return content_hash(prepared.images[k].path for k in keys)
    return identity_hash(image_check(data, skip_missing), keys)


def stale_reason(
    found: RunResult,
    fields: Mapping[str, Any],
    data: BenchmarkSplit,
    benchmark: Benchmark,
    limit: int | None,
    skip_missing: bool,
) -> str | None:
    """Why ``found`` (the result stored under this request's key) must not be reused; None when every identity
    matches. Raises the split's one-line error when its images cannot be identified now (missing)."""
    if canonical_json(found.key_fields) != canonical_json(dict(fields)):
        differ = sorted(k for k in {*found.key_fields, *fields} if found.key_fields.get(k) != fields.get(k))
        return f"the stored run's key fields ({', '.join(differ) or 'encoding'}) differ from this request's"
    if found.rankings_file:
        try:
            check_rankings(found)
        except UserError as error:
            return f"its stored rankings are damaged or missing ({shown(str(error), 200)})"
    if benchmark.images_generated:
        return None
    stored = found.benchmark.images_sha256
    if stored is None:
        return "the stored run does not identify its images (written by an older cirbench)"
    prepared, _ = prepare_split(data, skip_missing)
    prepared = limit_queries(prepared, limit)
    verified = found.benchmark.images_verified
    if images_identity(data, prepared, skip_missing, verified) != stored:
        how = "contents" if verified else "paths, sizes or modification times"
        return f"images changed (their {how})"
    return None


def reusable(
    found: RunResult | None, fields: Mapping[str, Any], data: BenchmarkSplit, benchmark: Benchmark, **kw: Any
) -> bool:
    """Whether ``found`` may be returned; a stale one is named in one line (it is then computed again, replaced)."""
    if found is None:
        return False
    why = stale_reason(found, fields, data, benchmark, **kw)
    if why is not None:
        log.warning("cirbench: %s since run %s (%s): recomputing", why, found.run_key, found.path)
    return why is None


def lock_path(path: Path) -> Path:
    """``.<result name without .json>.lock`` beside it: hidden, and matched by no result or rankings pattern."""
    return Path(path).with_name(f".{Path(path).stem}.lock")


@contextlib.contextmanager
def one_writer(path: Path | None, group: Group) -> Iterator[None]:
    """Hold the result's lock while it is computed and written; refuse (``BusyError``) when another process holds
    it. Rank 0 alone locks; every rank gets the same answer."""
    lock = FileLock(lock_path(path), blocking=False) if path is not None and group.main else None
    busy = None
    if lock is not None:
        try:
            lock.acquire()
        except Timeout:
            busy = (
                f"{path} is being computed by another process (lock {lock_path(path).name}); wait for it to "
                "finish and run again to reuse it, or use another --results-dir"
            )
    busy = broadcast(group, busy) if path is not None else None
    if busy is not None:
        raise BusyError(busy)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
            # No lock file is left beside the results. A process that opened it just before it went waits on a
            # file no longer in the folder and may compute too; its result is the same and lands whole (atomic).
            with contextlib.suppress(OSError):
                lock_path(path).unlink()
