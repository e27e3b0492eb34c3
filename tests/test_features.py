"""Feature cache: keyed by preprocessing and image list, resumes after an interrupted run, shared by methods."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cirbench import features
from cirbench.benchmarks.base import ImageRef
from cirbench.features import encode_images, entry_key, list_entries


def _images(folder, n):
    refs = []
    for i in range(n):
        path = folder / f"img{i}.png"
        Image.new("RGB", (40 + i, 30), (i * 20 % 255, 100, 200 - i)).save(path)
        refs.append(ImageRef(key=f"img{i}", path=path))
    return refs


def test_cache_hit_returns_identical_features(tmp_path, tiny_backbone):
    refs = _images(tmp_path, 5)
    first = encode_images(tiny_backbone, refs, batch_size=2)
    second = encode_images(tiny_backbone, refs, batch_size=3)
    assert not first.from_cache and second.from_cache
    np.testing.assert_array_equal(first.features, second.features)
    assert first.features.shape == (5, tiny_backbone.embed_dim)
    assert [e["n_images"] for e in list_entries()] == [5]


def test_key_changes_with_preprocessing_and_image_list(tmp_path, tiny_backbone):
    refs = _images(tmp_path, 3)
    assert entry_key(tiny_backbone, "clip", refs) != entry_key(tiny_backbone, "targetpad", refs)
    assert entry_key(tiny_backbone, "clip", refs) != entry_key(tiny_backbone, "clip", refs[:2])
    cropped = [ImageRef(r.key, r.path, crop=(1, 1, 5, 5)) for r in refs]
    assert entry_key(tiny_backbone, "clip", refs) != entry_key(tiny_backbone, "clip", cropped)


def test_interrupted_run_resumes_from_written_chunks(tmp_path, tiny_backbone, monkeypatch):
    monkeypatch.setattr(features, "CHUNK", 2)
    refs = _images(tmp_path, 5)
    reference = encode_images(tiny_backbone, refs, use_cache=False).features
    calls = {"n": 0}
    real = features._encode_chunk

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "_encode_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        encode_images(tiny_backbone, refs)
    entry = list_entries()[0]
    assert not entry["complete"]
    calls["n"] = 10  # no more failures; count how many chunks are encoded on resume
    resumed = encode_images(tiny_backbone, refs)
    assert calls["n"] == 12  # chunk 0 came from disk; chunks 1 and 2 were encoded
    np.testing.assert_allclose(resumed.features, reference, rtol=1e-6, atol=1e-6)
    assert list_entries()[0]["complete"]


def test_unreadable_image_is_named(tmp_path, tiny_backbone):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(RuntimeError, match="broken.png"):
        encode_images(tiny_backbone, [ImageRef("broken", bad)], use_cache=False)
