"""The shapes world, its caption grammar, the shipped tiny CLIP and the ``shapes`` benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cirbench.shapes.captions import (
    COLOR_WORDS,
    SHAPE_WORDS,
    canonical_caption,
    caption,
    corpus_captions,
    modification_text,
    write_corpus,
)
from cirbench.shapes.world import ATTRIBUTES, VALUES, Attributes, all_attributes, render, rng_for

ATTRS = Attributes("star", "purple", "small", "bottom right")


def test_render_is_deterministic_and_jittered():
    a = np.asarray(render(ATTRS, rng_for(1, 7, 3)))
    b = np.asarray(render(ATTRS, rng_for(1, 7, 3)))
    c = np.asarray(render(ATTRS, rng_for(1, 8, 3)))
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_attribute_space():
    combos = all_attributes()
    assert len(combos) == 4 * 8 * 2 * 9 == len({a.key for a in combos})
    assert all(Attributes.from_key(a.key) == a for a in combos)
    with pytest.raises(ValueError):
        Attributes("hexagon", "red", "small", "top")


def test_object_lands_in_its_grid_cell():
    image = np.asarray(render(Attributes("square", "white", "large", "top left"), rng_for(1, 0)), dtype=float)
    bright = image.sum(-1) > 400
    ys, xs = np.nonzero(bright)
    assert ys.mean() < 16 and xs.mean() < 16


def test_captions_are_deterministic_and_truthful():
    assert corpus_captions(200, seed=3) == corpus_captions(200, seed=3)
    assert corpus_captions(200, seed=3) != corpus_captions(200, seed=4)
    rng = np.random.default_rng(0)
    for _ in range(300):
        cap = caption(ATTRS, rng)
        assert cap.matches(ATTRS) and cap.mentions
        words = cap.text.split()
        if "color" in cap.mentions:
            assert set(words) & set(COLOR_WORDS["purple"])
        else:
            assert not set(words) & {w for ws in COLOR_WORDS.values() for w in ws}
        if "shape" in cap.mentions:
            assert set(words) & set(SHAPE_WORDS["star"])
    assert canonical_caption(ATTRS) == "a photo of a small purple star in the bottom right"


def test_write_corpus(tmp_path):
    path = write_corpus(tmp_path / "corpus.txt", n=50, seed=1)
    lines = path.read_text().splitlines()
    assert lines == corpus_captions(50, seed=1)
    assert write_corpus(tmp_path / "again.txt", n=50, seed=1).read_bytes() == path.read_bytes()


def test_modification_styles():
    rng = np.random.default_rng(0)
    for attribute in ATTRIBUTES:
        for value in VALUES[attribute]:
            imperative = modification_text(attribute, value, "imperative", rng)
            descriptive = modification_text(attribute, value, "descriptive", rng)
            assert imperative.split()[0] in {
                "make",
                "turn",
                "change",
                "paint",
                "shrink",
                "enlarge",
                "move",
                "put",
                "place",
            }
            assert descriptive.startswith("is ")


def test_grammar_fits_context_and_kept_vocabulary():
    import open_clip

    from cirbench.backbones import register_configs
    from cirbench.shapes.pretrain import kept_token_ids

    register_configs()
    tokenizer = open_clip.get_tokenizer("shapes-clip")
    texts = corpus_captions(400, seed=0)
    tokens = tokenizer(texts)
    assert tokens.shape[1] == 24
    assert int((tokens != 0).sum(1).max()) < 24  # nothing truncated
    kept = set(kept_token_ids())
    assert set(tokens.unique().tolist()) - {0} <= kept
    assert {259, 265, 49406, 49407} <= kept


def test_weights_round_trip(tmp_path):
    from cirbench.shapes.backbone import load_model, save_weights
    from cirbench.shapes.pretrain import init_model, kept_token_ids

    model = init_model(seed=1)
    save_weights(model, tmp_path, kept_token_ids(), {"seed": 1})
    loaded, meta = load_model(tmp_path)
    assert meta["seed"] == 1 and meta["kept_token_ids"] == kept_token_ids()
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3), name
    assert (tmp_path / "model.safetensors").stat().st_size < 10_000_000


@pytest.fixture(scope="module")
def shipped():
    from cirbench.backbones import load_backbone
    from cirbench.shapes.backbone import ASSET_DIR, BACKBONE_ID

    if not (ASSET_DIR / "model.safetensors").is_file():
        pytest.skip("shapes CLIP weights not shipped yet")
    return load_backbone(BACKBONE_ID), json.loads((ASSET_DIR / "meta.json").read_text())


def test_shipped_weights_reach_recorded_accuracy(shipped):
    from cirbench.shapes.backbone import ASSET_DIR
    from cirbench.shapes.pretrain import zero_shot_accuracy

    backbone, meta = shipped
    size = sum(p.stat().st_size for p in ASSET_DIR.iterdir())
    assert size <= 10 * 2**20
    assert backbone.context_length == 24 and backbone.image_size == 48
    assert backbone.tokenize_with_placeholder(["a photo of $"])[0, 4].item() == 259
    accuracy = zero_shot_accuracy(backbone.model)
    assert accuracy["exact"] == pytest.approx(meta["accuracy"]["exact"], abs=1.0)
    assert accuracy["exact"] >= 90.0


def test_shipped_backbone_preprocess_matches_training(shipped):
    from cirbench.shapes.backbone import image_transform

    backbone, meta = shipped
    image = render(ATTRS, rng_for(1, 0))
    expected = image_transform(48, tuple(meta["mean"]), tuple(meta["std"]))(image)
    assert torch.equal(backbone.preprocess(image), expected)


@pytest.fixture(scope="module")
def shapes_split(tmp_path_factory):
    from cirbench.benchmarks.shapes import Shapes

    root = tmp_path_factory.mktemp("shapes")
    bench = Shapes()
    return bench, bench.load(root, "test", {"queries_per_style": 60})


def test_benchmark_structure(shapes_split):
    from cirbench.benchmarks.shapes import key_attributes

    bench, data = shapes_split
    assert [p.name for p in data.parts] == ["imperative", "descriptive"]
    imperative, descriptive = data.parts
    assert imperative.gallery == descriptive.gallery and len(imperative.gallery) == 1152
    assert all(p.remove_reference for p in data.parts)
    assert all(ref.path.is_file() for ref in list(data.images.values())[:20])
    for part in data.parts:
        assert [q.qid for q in part.queries] == [f"{part.name}/{i}" for i in range(60)]
        for q in part.queries:
            target = Attributes.from_key(q.extra["target_attributes"])
            reference = key_attributes(q.reference)
            changed = [a for a in ATTRIBUTES if getattr(target, a) != getattr(reference, a)]
            assert changed == [q.extra["attribute"]]
            assert q.reference not in q.gt and len(q.gt) == 2
            assert all(key_attributes(g) == target for g in q.gt)
            assert {key_attributes(g) for g in imperative.gallery if key_attributes(g) == target} == {target}
            assert sum(key_attributes(g) == target for g in imperative.gallery) == len(q.gt)
    assert [q.reference for q in imperative.queries] == [q.reference for q in descriptive.queries]


def test_benchmark_is_deterministic_and_scores(shapes_split, tmp_path):
    from cirbench.benchmarks.base import Rankings

    bench, data = shapes_split
    again = bench.load(tmp_path, "test", {"queries_per_style": 60})
    assert [(q.reference, q.texts, q.gt) for q in again.queries] == [(q.reference, q.texts, q.gt) for q in data.queries]
    first = data.parts[0].gallery[0]
    same = np.asarray(__import__("PIL.Image").Image.open(data.images[first].path))
    assert np.array_equal(same, np.asarray(__import__("PIL.Image").Image.open(again.images[first].path)))
    gallery = data.parts[0].gallery
    perfect = {q.qid: [q.reference, *q.gt, *[g for g in gallery if g not in q.gt][:50]] for q in data.queries}
    scores = bench.metrics(data, Rankings(top=perfect))
    assert set(bench.metric_names) == set(scores)
    assert all(v == pytest.approx(100.0) for v in scores.values())
    # Second ground truth at rank 4: AP@10 = (1/1 + 2/4) / 2, R@1 still counts the first one.
    late = {q.qid: [q.gt[0], *[g for g in gallery if g not in q.gt][:2], q.gt[1]] for q in data.queries}
    scores = bench.metrics(data, Rankings(top=late))
    assert scores["mAP@10"] == pytest.approx(100 * (1 + 2 / 4) / 2)
    assert scores["R@1"] == pytest.approx(100.0)


def test_batch_and_loss():
    import open_clip

    from cirbench.backbones import register_configs
    from cirbench.shapes.backbone import image_transform
    from cirbench.shapes.pretrain import contrastive_loss, sample_batch

    register_configs()
    images, tokens, matches = sample_batch(
        rng_for(1, 0), 16, image_transform(48), open_clip.get_tokenizer("shapes-clip")
    )
    assert images.shape == (16, 3, 48, 48) and tokens.shape == (16, 24)
    assert matches.diagonal().all()
    features = torch.nn.functional.one_hot(torch.arange(16), 32).float()
    scale = torch.tensor(4.0)
    assert contrastive_loss(features, features, scale, torch.eye(16, dtype=torch.bool)) < 0.01
    assert contrastive_loss(features, features, scale, torch.ones(16, 16, dtype=torch.bool)) > 2.0


def test_both_shipped_versions_are_registered_and_differ():
    """v2 (CLIP's objective) is the default; v1 (multi-positive) stays loadable for the comparison in SHAPES.md."""
    from cirbench.backbones import load_backbone
    from cirbench.shapes.backbone import BACKBONE_ID, VERSIONS

    assert BACKBONE_ID == "shapes-clip:v2"
    metas = {v: json.loads((folder / "meta.json").read_text()) for v, folder in VERSIONS.items()}
    assert metas["shapes-clip:v2"]["multi_positive"] is False and metas["shapes-clip:v1"]["multi_positive"] is True
    assert (
        metas["shapes-clip:v2"]["accuracy"]["exact"] == 95.05 and metas["shapes-clip:v1"]["accuracy"]["exact"] == 98.96
    )
    loaded = {v: load_backbone(v) for v in VERSIONS}
    assert {v: b.id for v, b in loaded.items()} == {v: v for v in VERSIONS}
    assert loaded["shapes-clip:v1"].weights_id != loaded["shapes-clip:v2"].weights_id
