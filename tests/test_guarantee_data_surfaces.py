"""Bad inputs on the data surfaces (texts files, list files, the COCO CSV, prepare-coco, CIRCO / FashionIQ / GeneCIS
edits, shapes options) end as one line naming the file and record, or give the clean input's result. The readers
enforce this in one place: ``benchmarks.annotations`` (``read_text``, ``read_annotation_json``, ``read_lines``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from fault_support import one_line_error, run
from test_coco_objects import HEADER, make_coco
from test_coco_prepare import make_val2017
from test_domain_benchmarks import make_ltll, make_pic2word_imagenet_r

from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.coco_prepare import prepare_coco
from cirbench.errors import AnnotationError, DataError, LimitError, MethodError, OptionError, UsageError
from cirbench.evaluation.prepare import prepare_split
from cirbench.methods import precomputed_text
from cirbench.methods.precomputed_text import PrecomputedText, read_texts_file

FIXTURES = Path(__file__).parent / "fixtures"
TINY = "cirbench-tiny:random"


def _captions(root: Path) -> dict[str, str]:
    records = json.loads((root / "cirr" / "captions" / "cap.rc2.val.json").read_text())
    return {str(r["pairid"]): r["caption"] for r in records}


def _eval_texts(root: Path, texts: Path, results: Path):
    return run(
        "eval", "-m", "precomputed-text", "-b", TINY, "--benchmark", "cirr", "--root", root, "--device", "cpu",
        "--checkpoint", texts, "--results-dir", results, "--json",  # --json: no status line before the error
    )  # fmt: skip


# --------------------------------------------------------------------------------------------- texts files


def test_texts_file_key_twice_nan_and_size_are_refused_and_a_bom_is_read(cirr_split, tmp_path, monkeypatch):
    texts = tmp_path / "texts.json"
    plain = json.dumps(_captions(cirr_split))
    texts.write_text(plain.replace('{"100"', '{"100": "zzz", "100"', 1))
    one_line_error(_eval_texts(cirr_split, texts, tmp_path / "r"), "texts.json", "'100' appears twice")
    texts.write_text(plain[:-1] + ', "7": NaN}')
    one_line_error(_eval_texts(cirr_split, texts, tmp_path / "r"), "texts.json", "field '7' holds NaN")
    texts.write_text("\ufeff" + plain)  # Windows editors: the same texts as the plain file
    assert read_texts_file(texts).texts == read_texts_file(_write(tmp_path / "plain.json", plain)).texts
    monkeypatch.setattr(precomputed_text, "MAX_BYTES", 10)
    with pytest.raises(LimitError, match=r"texts.json: 0.0 MiB is over"):  # data check lists it (AnnotationError)
        read_texts_file(texts)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_texts_for_another_split_are_refused_but_other_parts_are_allowed(cirr_split, tmp_path):
    """A file whose ids cover this split's but hold others too (CIRCO test texts on val) is refused."""
    queries = get_benchmark("cirr").load(cirr_split, "val").queries
    covering = _write(tmp_path / "t.json", json.dumps({str(i): "x" for i in range(800)}))
    check = PrecomputedText.check_split
    with pytest.raises(MethodError, match=r"796 ids are not queries of this split, e.g. '0', '1', '2'"):
        check(SimpleNamespace(source=read_texts_file(covering)), queries)
    check(
        SimpleNamespace(source=read_texts_file(_write(tmp_path / "ok.json", json.dumps(_captions(cirr_split))))),
        queries,
    )
    fiq = get_benchmark("fashioniq").load(FIXTURES / "fashioniq", "val", {"categories": "dress"})
    texts = {q.qid: "x" for q in fiq.queries} | {"shirt/0": "x"}  # a part left out by -p categories: allowed
    check(SimpleNamespace(source=read_texts_file(_write(tmp_path / "f.json", json.dumps(texts)))), fiq.queries)
    texts["dress/99"] = "x"
    with pytest.raises(MethodError, match="dress/99"):
        check(SimpleNamespace(source=read_texts_file(_write(tmp_path / "f.json", json.dumps(texts)))), fiq.queries)


# --------------------------------------------------------------------------------------------- list files


def test_list_files_read_like_their_clean_form_or_name_the_file(tmp_path):
    bench = get_benchmark("freedom-ltll")
    root = make_ltll(tmp_path / "data")
    path = root / "ltll" / "full_files.csv"
    clean = path.read_text()
    queries = [(q.qid, q.reference, q.gt) for q in bench.load(root).queries]
    for variant in ("\ufeff" + clean, clean.replace("\n", "\r\n"), clean + "\n\n", "\n" + clean):
        path.write_text(variant)
        assert [(q.qid, q.reference, q.gt) for q in bench.load(root).queries] == queries
    for content, message in [
        (b"", "full_files.csv: the list is empty"),
        (b"\n \n", "full_files.csv: the list is empty"),
        (clean.encode().replace(b"Tower", b"T\xffwer", 1), "full_files.csv: not UTF-8 text"),
        (clean.replace(" ", ",").encode(), "line 1: expected '<path> <domain> <class>'"),
    ]:
        path.write_bytes(content)
        with pytest.raises(AnnotationError, match=message):
            bench.load(root)
    p2w = make_pic2word_imagenet_r(tmp_path / "p2w", images=False)
    (p2w / "imgnet" / "imgnet_real_query.txt").write_text("")
    with pytest.raises(AnnotationError, match="imgnet_real_query.txt: the list is empty"):
        get_benchmark("pic2word-imagenet-r").load(p2w)
    (p2w / "imgnet" / "label_names.csv").write_text("n00000001,fox\nn00000001,dog\n")
    with pytest.raises(AnnotationError, match="label_names.csv: line 2: 'n00000001' is named twice"):
        get_benchmark("freedom-imagenet-r").load(p2w / "imgnet")


def test_the_coco_csv_refuses_short_long_and_infinite_rows_and_reads_a_bom(tmp_path):
    bench = get_benchmark("pic2word-coco")
    base = make_coco(tmp_path / "coco")
    csv = base / "coco_eval.csv"
    clean = csv.read_text()
    queries = [(q.qid, q.texts) for q in bench.load(base).queries]
    csv.write_text("\ufeff" + clean)
    assert [(q.qid, q.texts) for q in bench.load(base).queries] == queries
    for text, message in [
        (clean.replace(",chair,potted plant;tv", ",chair"), "row 2: 3 fields, expected 4"),
        (clean.replace(",bear,", ",bear,,extra"), "row 3: 5 fields, expected 4"),
        (clean.replace("10.7;20.2", "inf;20.2"), "row 2: query_regions 'inf;20.2;40.9;50.5 ' is not"),
        (clean.replace("40.9;50.5", "1e300;50.5"), "row 2: query_regions"),
        (HEADER, "coco_eval.csv: no query rows under the header"),
        (clean.replace("chair", "ch\0air"), "holds a NUL character"),
    ]:
        csv.write_text(text)
        with pytest.raises(AnnotationError, match=message):
            bench.load(base)
    csv.write_bytes(clean.encode().replace(b"chair", b"ch\xffir"))
    with pytest.raises(AnnotationError, match="coco_eval.csv: not UTF-8 text"):
        bench.load(base)


# --------------------------------------------------------------------------------------------- prepare-coco


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ([[-50, -50, 9e9, 0, 9e9, 9e9]], "lies outside the"),  # crashed the process in pycocotools (SIGSEGV)
        ([[1, 2, None, 4, 5, 6]], "not a finite number"),  # was killed for memory
        ([[1, 2, 3]], "at least 3 x, y pairs"),
        ([], "an empty list of polygons"),
        (5, "neither a list of polygons nor an RLE"),
        ({"size": [3, 3], "counts": [0, 9]}, r"RLE size \[3, 3\] is not the image's"),
    ],
)
def test_bad_segmentations_are_one_line_before_pycocotools_sees_them(tmp_path, segmentation, message):
    root = make_val2017(tmp_path / "coco")
    path = root / "annotations" / "instances_val2017.json"
    data = json.loads(path.read_text())
    for annotation in data["annotations"]:
        annotation["segmentation"] = segmentation
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=f"instances_val2017.json: annotation 0: segmentation .*{message}"):
        prepare_coco(root, seed=0)


def test_prepare_coco_refuses_sizes_seeds_and_a_damaged_record(tmp_path):
    root = make_val2017(tmp_path / "coco")
    path = root / "annotations" / "instances_val2017.json"
    clean = path.read_text()
    data = json.loads(clean)
    data["images"][0]["height"] = 0  # its image was left out of the draw silently
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match="image 0: height and width must be in 1..65536 pixels, got 0 x"):
        prepare_coco(root, seed=0)
    path.write_text(clean)
    with pytest.raises(OptionError, match="seed"):
        prepare_coco(root, seed=-1)  # random.Random(-1) draws what seed 1 draws
    prepare_coco(root, seed=0)
    (root / "coco_prepare.json").write_text("{")
    with pytest.raises(UsageError, match="coco_prepare.json: cannot read the record .* pass --overwrite"):
        prepare_coco(root, seed=0)


# ----------------------------------------------------------------------------------------- CIRCO, FashionIQ, GeneCIS


def _circo(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "circo"
    shutil.copytree(FIXTURES / "circo", root)
    records = json.loads((root / "annotations" / "val.json").read_text())
    ids = sorted({x for r in records for x in [r["reference_img_id"], *r["gt_img_ids"]]})
    info = root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in ids]}))
    return root, root / "annotations" / "val.json"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["gt_img_ids"].append(777), "record 0: 'gt_img_ids' 777 are not in the gallery list"),
        (lambda r: r["gt_img_ids"].append(r["gt_img_ids"][0]), "record 0: 'gt_img_ids' lists 355099 twice"),
        (lambda r: r.__setitem__("target_img_id", 1), "record 0: 'target_img_id' 1 is not among 'gt_img_ids'"),
        (lambda r: r.__setitem__("relative_caption", " "), "record 0: 'relative_caption' is empty"),
    ],
)
def test_circo_ground_truth_that_cannot_be_retrieved_is_refused(tmp_path, change, message):
    root, path = _circo(tmp_path)
    records = json.loads(path.read_text())
    change(records[0])
    path.write_text(json.dumps(records))
    with pytest.raises(AnnotationError, match=message):
        get_benchmark("circo").load(root, "val")


def test_option_paths_that_do_not_exist_and_empty_lists_name_the_file(tmp_path):
    root, path = _circo(tmp_path)
    with pytest.raises(AnnotationError, match="-p image_info=.*nowhere.json: no such file"):
        get_benchmark("circo").load(root, "val", {"image_info": str(tmp_path / "nowhere.json")})
    path.write_text("[]")
    with pytest.raises(DataError, match=r"circo val: no query to evaluate; check .*val.json"):
        prepare_split(get_benchmark("circo").load(root, "val"))
    genecis = get_benchmark("genecis").load(FIXTURES / "genecis", "test", {"tasks": "focus_object"})
    assert genecis.blockers == [
        "object tasks need their images: pass -p coco_root=FOLDER (COCO val2017 images); scoring a rankings file "
        "does not"
    ]


def test_fashioniq_and_genecis_records_that_would_score_silently_wrong(tmp_path):
    fiq = tmp_path / "fiq"
    shutil.copytree(FIXTURES / "fashioniq", fiq)
    dress = fiq / "captions" / "cap.dress.val.json"
    records = json.loads(dress.read_text())
    records[0]["captions"].append("and red")  # only the first caption was encoded
    dress.write_text(json.dumps(records))
    with pytest.raises(AnnotationError, match="record 0: 'captions' must hold two captions, got 3"):
        get_benchmark("fashioniq").load(fiq, "val")
    gen = tmp_path / "gen"
    gen.mkdir()
    clean = json.loads((FIXTURES / "genecis" / "focus_object.json").read_text())
    for change, message in [
        (lambda r: r.__setitem__("gallery", []), "'gallery' is empty"),  # the target alone: R@1 100
        (lambda r: r["gallery"].append(r["gallery"][0]), "'gallery' lists coco:121506 twice"),
        (lambda r: r.__setitem__("condition", ""), "'condition' is empty"),
    ]:
        records = json.loads(json.dumps(clean))
        change(records[0])
        (gen / "focus_object.json").write_text(json.dumps(records))
        with pytest.raises(AnnotationError, match=f"focus_object.json: record 0: {message}"):
            get_benchmark("genecis").load(gen, "test", {"tasks": "focus_object"})


def test_shapes_options_are_bounded():
    for value in ("33", "1000000000"):
        with pytest.raises(OptionError, match=rf"renders='{value}' is not valid; expected a value in \[1, 32\]"):
            get_benchmark("shapes").parse_options({"renders": value})
    with pytest.raises(OptionError, match="queries_per_style"):
        get_benchmark("shapes").parse_options({"queries_per_style": 10**10})


def test_a_part_without_queries_is_named_before_anything_is_encoded(tmp_path):
    """A FreeDom domain with no query image (or an empty FashionIQ category) crashed in the metric after encoding."""
    root = make_ltll(tmp_path / "data")
    path = root / "ltll" / "full_files.csv"
    path.write_text("\n".join(line for line in path.read_text().splitlines() if " Old " in line))
    data = get_benchmark("freedom-ltll").load(root)
    with pytest.raises(
        DataError, match=r"freedom-ltll test: no query in part Today_to_Archive; check .*full_files.csv"
    ):
        prepare_split(data)


def test_skip_missing_prints_and_stores_unreadable_images(cirr_split, tmp_path):
    sorted((cirr_split / "dev").iterdir())[0].write_text("hello")  # present, but no image
    out = run(
        "eval", "-m", "image+text", "-b", TINY, "--benchmark", "cirr", "--root", cirr_split, "--device", "cpu",
        "--results-dir", tmp_path / "r", "--skip-missing",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "skipped 0 missing images, 1 unreadable, 1 queries" in " ".join(out.output.split())
    stored = json.loads(next((tmp_path / "r" / "runs").rglob("*--*.json")).read_text())
    assert stored["skipped"]["images_unreadable"] == 1 and stored["skipped"]["queries_dropped"] == 1
