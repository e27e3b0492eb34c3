"""Run keys: the hash of everything that changes a run's numbers, and nothing else.

In: the method, its version, the options that change numbers, the checkpoint's identity, the backbone's weights, the
benchmark, split, protocol version and options that change numbers, the data's identity (layout, annotation
checksums, which images were left out). Out: derived facts, explanatory text, batch sizes, devices, locations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cirbench.identity import short_hash

KEY_VERSION = 2  # how run keys are made; schema-1 results are migrated by `cirbench results migrate`


def make_key_fields(
    *,
    method: str,
    method_version: str,
    method_options: Mapping[str, Any],
    checkpoint_id: str | None,
    backbone: str,
    benchmark: str,
    split: str,
    protocol_version: str,
    protocol: Mapping[str, Any],
    layout: str,
    annotations_sha256: str,
    missing_images: str | None,
) -> dict[str, Any]:
    """The exact payload a run key hashes (stored in every result as ``key_fields``)."""
    return {
        "key_version": KEY_VERSION,
        "method": method,
        "method_version": method_version,
        "method_options": dict(method_options),
        "checkpoint_id": checkpoint_id,
        "backbone": backbone,
        "benchmark": benchmark,
        "split": split,
        "protocol_version": protocol_version,
        "protocol": dict(protocol),
        "layout": layout,
        "annotations_sha256": annotations_sha256,
        "missing_images": missing_images,
    }


def run_key(fields: Mapping[str, Any]) -> str:
    return short_hash(dict(fields), 12)
