"""Feature cache: keyed by preprocessing and image list, resumes after an interrupted run, shared by methods."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cirbench import features
from cirbench.benchmarks.base import ImageRef
from cirbench.errors import DataError
from cirbench.features import encode_images, entry_key, list_entries


def _images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
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
    with pytest.raises(DataError, match=r"cannot decode image 'broken' at .*broken.png.*data check --deep"):
        encode_images(tiny_backbone, [ImageRef("broken", bad)], use_cache=False)


def test_changed_files_with_the_same_names_get_their_own_features(tmp_path, tiny_backbone):
    """The cache key holds each file's identity: same names in another folder, or a rewritten file, re-encode."""
    first = encode_images(tiny_backbone, _images(tmp_path / "a", 3))
    (tmp_path / "b").mkdir()
    other = [ImageRef(f"img{i}", tmp_path / "b" / f"img{i}.png") for i in range(3)]
    for i, ref in enumerate(other):
        Image.new("RGB", (40, 30), (200, 10 * i, 0)).save(ref.path)
    second = encode_images(tiny_backbone, other)
    assert not second.from_cache and not np.allclose(first.features, second.features)
    Image.new("RGB", (40, 30), (0, 0, 255)).save(other[0].path)
    third = encode_images(tiny_backbone, other)
    assert not third.from_cache and not np.allclose(third.features[0], second.features[0])
    np.testing.assert_array_equal(third.features[1:], second.features[1:])
    assert encode_images(tiny_backbone, other).from_cache


def test_bad_chunks_and_truncated_entries_are_encoded_again(tmp_path, tiny_backbone, monkeypatch, caplog):
    monkeypatch.setattr(features, "CHUNK", 2)
    refs = _images(tmp_path, 5)
    clean = encode_images(tiny_backbone, refs, use_cache=False).features
    folder = (
        features.cache_root()
        / "features"
        / features.entry_key(
            tiny_backbone,
            "clip",
            refs,
            images_id=features.identity_hash(features.check_images(refs), [r.key for r in refs]),
        )
    )
    folder.mkdir(parents=True)
    np.save(folder / "chunk_000000.npy", np.zeros((3, 7), np.float32))  # wrong shape: must not be merged
    np.save(folder / "chunk_000001.npy", clean[2:4].astype(np.float64))  # wrong dtype
    with caplog.at_level("WARNING", logger="cirbench"):
        out = encode_images(tiny_backbone, refs)
    np.testing.assert_allclose(out.features, clean, rtol=1e-6, atol=1e-6)
    assert sum("encoding it again" in r.getMessage() for r in caplog.records) == 2
    final = folder / "features.npy"
    final.write_bytes(final.read_bytes()[:-9])  # truncated by a crash or a full disk
    assert not list_entries()[0]["complete"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="cirbench"):
        again = encode_images(tiny_backbone, refs)
    assert not again.from_cache and any("damaged" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(again.features, clean, rtol=1e-6, atol=1e-6)
    assert list_entries()[0]["complete"] and encode_images(tiny_backbone, refs).from_cache
