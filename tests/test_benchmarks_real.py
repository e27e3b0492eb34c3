"""Loaders on the real annotation files (``shared_annotations``, skipped when absent) and on the excerpts in
``tests/fixtures/`` (always run), plus layout detection, error messages and the registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cirbench.benchmarks import BENCHMARKS, get_benchmark, register_benchmark
from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, Rankings
from cirbench.errors import AnnotationError, OptionError, UnknownNameError, UserError

FIXTURES = Path(__file__).parent / "fixtures"
OBJECT_TASKS = {"tasks": ["change_object", "focus_object"]}


def _images_cover_queries(data: BenchmarkSplit) -> None:
    for part in data.parts:
        for key in part.gallery or []:
            assert key in data.images
        for q in part.queries:
            for key in [q.reference, *(q.candidates or ()), *(q.subset or ())]:
                assert key in data.images, (q.qid, key)


# --------------------------------------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def cirr_val(shared_annotations: Path) -> BenchmarkSplit:
    return get_benchmark("cirr").load(shared_annotations / "cirr", "val")


def test_circo_real(shared_annotations: Path) -> None:
    circo = get_benchmark("circo")
    val = circo.load(shared_annotations / "circo", "val")
    test = circo.load(shared_annotations / "circo", "test")
    assert len(val.queries) == 220 and len(test.queries) == 800
    assert val.has_labels and not test.has_labels and val.layout == "official"
    assert [q.qid for q in val.queries] == [str(i) for i in range(220)]
    assert all(q.target == q.gt[0] and q.reference not in q.gt for q in val.queries)
    assert sum(len(q.gt) for q in val.queries) == 916
    # no image_info here: the gallery is unknown, scoring still works
    assert (
        val.facts["gallery_known"] is False and val.parts[0].gallery == [] and "gallery is unknown" in val.blockers[0]
    )
    assert val.options["remove_reference"] is False and val.parts[0].remove_reference is False
    q0 = val.queries[0]
    assert q0.reference == "271520" and q0.gt == ("355099", "528417", "534704")
    assert q0.texts == ("shows two people and has a more colorful background",)
    assert "spatial_relations_background" in q0.extra["semantic_aspects"]
    _images_cover_queries(val)


def test_cirr_real(shared_annotations: Path, cirr_val: BenchmarkSplit) -> None:
    test = get_benchmark("cirr").load(shared_annotations / "cirr", "test")  # alias of test1
    assert test.split == "test1" and not test.has_labels
    assert len(cirr_val.queries) == 4181 and len(test.queries) == 4148
    assert cirr_val.gallery_size == 2297 and test.gallery_size == 2315
    assert cirr_val.parts[0].remove_reference and cirr_val.options["remove_reference"] is True
    assert all(len(q.subset) == 5 and q.reference not in q.subset for q in cirr_val.queries)
    assert all(q.target in q.subset and q.gt == (q.target,) for q in cirr_val.queries)
    soft_ref = [q for q in cirr_val.queries if q.reference in q.extra["target_soft"]]
    assert len(soft_ref) == 37
    assert all(q.target not in q.extra["target_soft"] for q in soft_ref)
    assert len({q.qid for q in cirr_val.queries}) == 4181
    _images_cover_queries(cirr_val)


def test_cirr_hard_vs_soft_on_perfect_rankings(shared_annotations: Path, cirr_val: BenchmarkSplit) -> None:
    """target_hard ranked first: hard scoring is perfect, soft scoring is not (the ~40 queries)."""
    top = {q.qid: [q.reference, q.target, *[m for m in q.subset if m != q.target]] for q in cirr_val.queries}
    hard = get_benchmark("cirr").metrics(cirr_val, Rankings(top=top))
    assert hard["R@1"] == 100.0 and hard["Rsubset@1"] == 100.0
    soft_split = get_benchmark("cirr").load(shared_annotations / "cirr", "val", {"scoring": "soft"})
    soft = get_benchmark("cirr").metrics(soft_split, Rankings(top=top))
    assert 98.0 < soft["R@1"] < 100.0


def test_fashioniq_real(shared_annotations: Path) -> None:
    fiq = get_benchmark("fashioniq")
    val = fiq.load(shared_annotations / "fashioniq", "val")
    assert [(p.name, len(p.queries), len(p.gallery)) for p in val.parts] == [
        ("dress", 2017, 3817),
        ("shirt", 2038, 6346),
        ("toptee", 1961, 5373),
    ]
    assert val.layout == "searle" and not any(p.remove_reference for p in val.parts)
    q = val.parts[0].queries[0]
    assert q.qid == "dress/0" and q.texts == ("is shiny and silver with shorter sleeves", "fit and flare")
    assert q.extra["category"] == "dress" and q.target == "B0084Y8XIU"
    test = fiq.load(shared_annotations / "fashioniq", "test", {"categories": ["shirt"]})
    assert not test.has_labels and [len(p.queries) for p in test.parts] == [2038]
    _images_cover_queries(val)


def test_genecis_real(shared_annotations: Path) -> None:
    genecis = get_benchmark("genecis")
    with pytest.raises(AnnotationError, match="focus_attribute.json") as err:
        genecis.load(shared_annotations / "genecis", "test")
    assert "tasks=" in str(err.value)
    data = genecis.load(shared_annotations / "genecis", "test", OBJECT_TASKS)
    assert [(p.name, len(p.queries)) for p in data.parts] == [("change_object", 1960), ("focus_object", 1960)]
    assert data.layout == "nested" and all(p.gallery is None for p in data.parts)
    assert all(len(q.candidates) == 15 and q.candidates[0] == q.target for q in data.queries)
    q19 = data.parts[0].queries[19]
    assert q19.qid == "change_object/19" and q19.texts == ("toaster",) and q19.target == "coco:175364"
    assert q19.candidates.count("coco:175364") == 2  # the target is also one of its distractors
    _images_cover_queries(data)


# --------------------------------------------------------------------------------------------- excerpts


def test_circo_excerpt_and_options(tmp_path: Path) -> None:
    circo = get_benchmark("circo")
    data = circo.load(FIXTURES / "circo", "val", {"circo_text": "shared_concept+relative_caption"})
    q = data.queries[0]
    caption = json.loads((FIXTURES / "circo/annotations/val.json").read_text())[0]["relative_caption"]
    # "{relative_caption}, {shared_concept}", the one text every method receives (SEARLE/LinCIR's choice)
    assert q.texts == (f"{caption}, a girl with a traditional Chinese umbrella",)
    assert circo.query_texts(q, "c2-and-c1-raw") == [q.texts[0]]
    assert data.options["circo_text"] == "shared_concept+relative_caption"
    # root may be the annotations folder itself
    assert len(circo.load(FIXTURES / "circo" / "annotations", "test").queries) == 3
    # with image_info the gallery is every listed image in file order; an unexpected count is recorded
    root = tmp_path / "CIRCO"
    shutil.copytree(FIXTURES / "circo" / "annotations", root / "annotations")
    info = root / "COCO2017_unlabeled/annotations/image_info_unlabeled2017.json"
    info.parent.mkdir(parents=True)
    info.write_text(
        json.dumps({"images": [{"id": 355099, "file_name": "000000355099.jpg"}, {"id": 7, "file_name": "x.jpg"}]})
    )
    data = circo.load(root, "test", {"remove_reference": True})  # val: its ground truth is not in this gallery
    assert data.parts[0].gallery == ["355099", "7"] and data.facts["gallery_known"] is True and not data.blockers
    assert data.facts["gallery_size"] == 2 and "expected 123403" in data.warnings[0]
    assert data.images["355099"].path == root / "COCO2017_unlabeled/unlabeled2017/000000355099.jpg"
    assert data.parts[0].remove_reference is True


def test_circo_malformed_and_missing(tmp_path: Path) -> None:
    records = json.loads((FIXTURES / "circo/annotations/val.json").read_text())
    del records[2]["reference_img_id"]
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/val.json").write_text(json.dumps(records))
    with pytest.raises(AnnotationError) as err:
        get_benchmark("circo").load(tmp_path, "val")
    msg = str(err.value)
    assert "val.json" in msg and "record 2" in msg and "reference_img_id" in msg and "re-download" in msg
    with pytest.raises(AnnotationError, match="annotations/test.json"):
        get_benchmark("circo").load(tmp_path, "test")


def test_cirr_excerpt_and_layouts(tmp_path: Path) -> None:
    cirr = get_benchmark("cirr")
    data = cirr.load(FIXTURES / "cirr", "val")
    assert data.layout == "official" and len(data.queries) == 5
    q = {q.qid: q for q in data.queries}["12130"]
    assert (
        q.reference == "dev-189-3-img0"
        and q.target == "dev-115-1-img0"
        and q.subset
        == (
            "dev-93-2-img0",
            "dev-720-0-img1",
            "dev-115-1-img0",
            "dev-748-0-img0",
            "dev-602-1-img0",
        )
    )
    assert q.extra["target_soft"]["dev-189-3-img0"] == 1.0 and q.extra["img_set_id"] == 79
    assert data.images["dev-244-0-img0"].path == FIXTURES / "cirr/img_raw/dev/dev-244-0-img0.png"
    _images_cover_queries(data)

    searle = tmp_path / "searle" / "CIRR"
    shutil.copytree(FIXTURES / "cirr", searle / "cirr")
    (searle / "dev").mkdir()
    data = cirr.load(searle, "val")
    assert data.layout == "searle" and data.images["dev-244-0-img0"].path == searle / "dev/dev-244-0-img0.png"
    assert cirr.load(searle / "cirr", "val").layout == "searle"  # root = the annotation folder inside

    pic = tmp_path / "pic2word"
    shutil.copytree(FIXTURES / "cirr", pic)
    (pic / "test1").mkdir()
    data = cirr.load(pic, "test1")
    assert data.layout == "pic2word" and data.images["test1-147-1-img1"].path == pic / "test1/test1-147-1-img1.png"

    with pytest.raises(AnnotationError, match="cirr/captions/cap.rc2.val.json") as err:
        cirr.load(tmp_path / "nothing", "val")
    assert "img_raw" in str(err.value) and "Pic2Word" in str(err.value)
    with pytest.raises(ValueError, match="test1"):
        cirr.load(FIXTURES / "cirr", "train")


def test_cirr_malformed(tmp_path: Path) -> None:
    root = tmp_path / "cirr"
    shutil.copytree(FIXTURES / "cirr", root)
    path = root / "captions/cap.rc2.val.json"
    records = json.loads(path.read_text())
    del records[1]["target_hard"]
    path.write_text(json.dumps(records))
    with pytest.raises(AnnotationError, match=r"record 1: missing 'target_hard'.*re-download"):
        get_benchmark("cirr").load(root, "val")


def test_fashioniq_excerpt_and_layouts(tmp_path: Path) -> None:
    fiq = get_benchmark("fashioniq")
    data = fiq.load(FIXTURES / "fashioniq", "val")
    dress = data.parts[0]
    assert [len(p.queries) for p in data.parts] == [7, 3, 3]  # the duplicate dress group is kept whole
    dup = dress.queries[3:]
    assert len({(q.reference, q.texts) for q in dup}) == 1 and len({q.target for q in dup}) == 4
    assert dup[0].texts[0].startswith(" ")  # captions raw, not stripped or joined
    assert data.images["B0084Y8XIU"].path == FIXTURES / "fashioniq/images/B0084Y8XIU.jpg"
    _images_cover_queries(data)

    # reference not removed: reference at rank 1, target at rank 11 misses R@10
    top = {}
    for part in data.parts:
        for q in part.queries:
            top[q.qid] = [q.reference] + [f"x{i}" for i in range(9)] + [q.target]
    res = fiq.metrics(data, Rankings(top=top))
    assert res["dress_R@10"] == 0.0 and res["dress_R@50"] == 100.0 and res["avg_R@50"] == 100.0
    only = fiq.load(FIXTURES / "fashioniq", "val", {"categories": ["dress"]})
    assert "avg_R@10" not in fiq.metrics(only, Rankings(top=top))

    pic = tmp_path / "fashion-iq"
    shutil.copytree(FIXTURES / "fashioniq/image_splits", pic / "image_splits")
    shutil.copytree(FIXTURES / "fashioniq/captions", pic / "json")
    data = fiq.load(pic, "val", {"categories": ["shirt"]})
    assert data.layout == "pic2word" and next(iter(data.images.values())).path.suffix == ".png"

    test = fiq.load(FIXTURES / "fashioniq", "test", {"categories": ["dress"]})
    assert not test.has_labels and test.queries[0].target is None
    with pytest.raises(ValueError, match="no public targets"):
        fiq.metrics(test, Rankings(top={}))
    with pytest.raises(AnnotationError, match="cap.shirt.test.json"):
        fiq.load(FIXTURES / "fashioniq", "test")


def test_genecis_excerpt_and_attribute_format(tmp_path: Path) -> None:
    genecis = get_benchmark("genecis")
    data = genecis.load(FIXTURES / "genecis", "test", {**OBJECT_TASKS, "coco_root": "/coco/val2017"})
    assert data.layout == "flat" and [len(p.queries) for p in data.parts] == [20, 3]
    assert data.images["coco:175364"].path == Path("/coco/val2017/000000175364.jpg")
    q = data.parts[1].queries[0]
    assert q.qid == "focus_object/0" and q.texts == ("cardboard",) and q.reference == "coco:189213"
    assert q.candidates[0] == "coco:153527" and len(q.candidates) == 15 and q.extra["task"] == "focus_object"

    rec = {
        "reference": {"image_id": "2412", "instance_bbox": [10, 20.5, 30.0, 40]},
        "target": {"image_id": 77, "instance_bbox": [1, 2, 3, 4]},
        "condition": "red",
        "gallery": [{"image_id": 78, "instance_bbox": [0, 0, 5, 5]}],
    }
    (tmp_path / "focus_attribute.json").write_text(json.dumps([rec]))
    data = genecis.load(tmp_path, "test", {"tasks": ["focus_attribute"], "vg_root": "/vg"})
    q = data.queries[0]
    assert q.reference == "vg:2412:10,20.5,30,40" and q.candidates == ("vg:77:1,2,3,4", "vg:78:0,0,5,5")
    ref = data.images[q.reference]
    assert ref.crop == (10.0, 20.5, 30.0, 40.0) and ref.path == Path("/vg/2412.jpg")

    (tmp_path / "change_attribute.json").write_text(json.dumps([{**rec, "gallery": [{"image_id": 5}]}]))
    with pytest.raises(AnnotationError, match=r"change_attribute.json: record 0: .*instance_bbox"):
        genecis.load(tmp_path, "test", {"tasks": ["change_attribute"]})


# --------------------------------------------------------------------------------------------- registry


def test_registry() -> None:
    assert {"circo", "cirr", "fashioniq", "genecis", "shapes"} <= set(BENCHMARKS)
    assert get_benchmark("CIRR").name == "cirr"
    with pytest.raises(UnknownNameError, match="did you mean 'cirr'") as err:
        get_benchmark("cirrr")
    assert isinstance(err.value, UserError)  # the CLI prints it as one line, exit 2
    for name in ("circo", "cirr", "fashioniq", "genecis"):
        b = get_benchmark(name)
        assert b.main_metric in b.metric_names and isinstance(b.default_options(), dict)

    class Toy(Benchmark):
        name = "toy-test"
        splits = ("val",)
        main_metric = "R@1"
        metric_names = ("R@1",)

    try:
        register_benchmark(Toy)
        register_benchmark(Toy)  # the same definition again (a module imported twice) is a no-op
        assert isinstance(get_benchmark("toy-test"), Toy)
        with pytest.raises(ValueError, match="already registered"):
            register_benchmark(type("Other", (Toy,), {})())
        with pytest.raises(ValueError, match="not a benchmark"):
            register_benchmark(object())
    finally:
        BENCHMARKS.unregister("toy-test")


def test_options_are_typed_and_strict() -> None:
    cirr = get_benchmark("cirr")
    assert cirr.parse_options({"remove_reference": "FALSE"})["remove_reference"] is False
    assert cirr.parse_options({"remove_reference": "yes"})["remove_reference"] is True
    assert cirr.parse_options({"remove_reference": 0})["remove_reference"] is False
    for bad in ("'false'", "f", "2", 2, None):
        with pytest.raises(OptionError, match="remove_reference.*true/false, 1/0 or yes/no"):
            cirr.parse_options({"remove_reference": bad})
    with pytest.raises(OptionError, match=r"option\(s\) remove_refrence; known: protocol, remove_reference, scoring"):
        cirr.parse_options({"remove_refrence": True})
    with pytest.raises(OptionError, match="scoring='medium'.*one of hard, soft"):
        cirr.parse_options({"scoring": "medium"})
    fiq = get_benchmark("fashioniq")
    assert fiq.parse_options({"categories": "shirt, dress"})["categories"] == ["shirt", "dress"]
    with pytest.raises(OptionError, match="categories"):
        fiq.parse_options({"categories": "shirt,hat"})
    shapes = get_benchmark("shapes")
    assert shapes.parse_options({"renders": "3"})["renders"] == 3
    with pytest.raises(OptionError, match=r"renders=0.*\[1, 32\]"):
        shapes.parse_options({"renders": 0})
