"""A tiny CIRR split on disk for tests (the ``cirr_root`` fixture and the decoding tests)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def make_cirr(root: Path, image: Callable[[int], tuple[Any, str]] | None = None) -> Path:
    """A 12-image CIRR val split in the SEARLE layout: 4 queries whose groups have 6 members each
    (reference = members[0], target = members[2]). ``image(i)`` gives image i and its suffix (default: a plain
    48 x 40 colour, PNG)."""
    from PIL import Image

    def plain(i: int) -> tuple[Any, str]:
        return Image.new("RGB", (48, 40), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)), ".png"

    names = [f"dev-{i}-0-img{i % 2}" for i in range(12)]
    (root / "cirr" / "captions").mkdir(parents=True)
    (root / "cirr" / "image_splits").mkdir(parents=True)
    (root / "dev").mkdir()
    split = {}
    for i, name in enumerate(names):
        picture, suffix = (image or plain)(i)
        picture.save(root / "dev" / f"{name}{suffix}")
        split[name] = f"./dev/{name}{suffix}"
    (root / "cirr" / "image_splits" / "split.rc2.val.json").write_text(json.dumps(split))
    queries = []
    for q in range(4):
        members = names[q : q + 6]
        queries.append(
            {
                "pairid": 100 + q,
                "reference": members[0],
                "target_hard": members[2],
                "target_soft": {members[2]: 1.0},
                "caption": ["make it green", "add a dog", "show it at night", "remove the car"][q],
                "img_set": {"id": q, "members": members, "reference_rank": 0, "target_rank": 2},
            }
        )
    (root / "cirr" / "captions" / "cap.rc2.val.json").write_text(json.dumps(queries))
    return root
