"""``cirbench results migrate``: rewrite schema-1 result files (cirbench 0.1) as schema 2, under their new keys.

Schema 1 hashed derived facts and explanatory text into its run keys (a GeneCIS tie-rule sentence, CIRCO's gallery
warnings, mapper descriptions, the checkpoint's training step); schema 2 hashes user options and identities only, so
each file gets a new key. How an old record is read is ``cirbench.results.upgrade_v1``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from cirbench.io import atomic_write_json, atomic_write_json_gz, read_json
from cirbench.results import read_raw, upgrade_v1


@dataclass
class Migration:
    old: Path
    new: Path
    old_key: str
    new_key: str


def migrate(results_dir: Path, dry_run: bool = False) -> list[Migration]:
    """Rewrite every schema-1 result under ``results_dir/runs`` (and its rankings) as schema 2 under its new key.

    The new files are written (atomically) before the old ones are removed, so an interruption leaves both, never
    neither; running it again finishes the job. Where a schema-2 result already holds the new key (the same run,
    evaluated again by the current cirbench), it is kept and the old file removed.
    """
    done = []
    for path in sorted((Path(results_dir) / "runs").glob("*/*/*.json")):
        raw = read_raw(path, "move it away and migrate again")
        if not isinstance(raw, dict) or raw.get("schema_version") != 1:
            continue
        record = upgrade_v1(raw)
        old_key, new_key = record["migrated_from"]["run_key"], record["run_key"]
        new_path = path.with_name(path.name.replace(old_key, new_key)) if old_key in path.name else path
        done.append(Migration(path, new_path, old_key, new_key))
        if dry_run:
            continue
        if new_path != path and new_path.is_file():  # the same run already written by the current cirbench
            path.unlink()
            if raw.get("rankings_file"):
                with contextlib.suppress(FileNotFoundError):
                    path.with_name(raw["rankings_file"]).unlink()
            continue
        old_rankings = path.with_name(raw["rankings_file"]) if raw.get("rankings_file") else None
        if old_rankings is not None and old_rankings.is_file():
            new_rankings = new_path.with_name(new_path.name[: -len(".json")] + ".rankings.json.gz")
            atomic_write_json_gz(new_rankings, read_json(old_rankings))
            record["rankings_file"] = new_rankings.name
        atomic_write_json(new_path, record)
        if new_path != path:
            path.unlink()
            if old_rankings is not None and old_rankings.name != record.get("rankings_file"):
                with contextlib.suppress(FileNotFoundError):
                    old_rankings.unlink()
    return done
