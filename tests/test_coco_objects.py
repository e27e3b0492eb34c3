"""Pic2Word COCO object composition: the loader on a generated coco_eval.csv + val2017/ + val2017_masked/ layout, the
masked-crop squash, prompts (also as Pic2Word encodes them), strict errors, R@K by hand, and an end-to-end run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.base import Rankings
from cirbench.benchmarks.coco_objects import REGION_SIZE, open_region
from cirbench.errors import AnnotationError, DataError, ScoringError
from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve
from cirbench.methods import build_method
from cirbench.methods.pic2word import IM2TEXT

HEADER = "id,query_regions,query_class,classes\n"
ROWS = [  # as prepare_data.py writes them: x1;y1;x2;y2 with a trailing space, others joined by ';', maybe empty
    "000000000139.jpg,10.7;20.2;40.9;50.5 ,chair,potted plant;tv",
    "000000000285.jpg,0.0;0.0;30.3;25.0 ,bear,",
    "000000000632.jpg,5;6;25;36 ,book,bed;person",
]
RED, WHITE = (200, 30, 40), (255, 255, 255)


def make_coco(base: Path, masked: bool = True) -> Path:
    """Pic2Word's data/coco: the CSV, the original images and the masked ones (white outside the object)."""
    (base / "val2017").mkdir(parents=True)
    (base / "coco_eval.csv").write_text(HEADER + "\n".join(ROWS) + "\n")
    for i, row in enumerate(ROWS):
        name = row.split(",")[0]
        Image.new("RGB", (64, 56), (40 * i, 90, 150)).save(base / "val2017" / name)
        if masked:
            (base / "val2017_masked").mkdir(exist_ok=True)
            image = Image.new("RGB", (64, 56), WHITE)
            x1, y1, x2, y2 = (int(float(v)) for v in row.split(",")[1].split(";"))
            image.paste(Image.new("RGB", (x2 - x1, y2 - y1), RED), (x1, y1))
            image.save(base / "val2017_masked" / name.replace(".jpg", ".png"))  # lossless here, named .jpg below
            (base / "val2017_masked" / name.replace(".jpg", ".png")).rename(base / "val2017_masked" / name)
    return base


def test_loader_texts_prompts_and_images(tmp_path):
    data = get_benchmark("pic2word-coco").load(make_coco(tmp_path / "coco"))
    assert data.gallery_size == 3 and [q.qid for q in data.queries] == ["139", "285", "632"]
    q139, q285, _ = data.queries
    assert q139.reference == "region:139" and q139.target == "139" and q139.gt == ("139",)
    assert q139.texts == ("a photo of chair and potted plant and tv",)  # text-only: slot 3, text_full
    assert q139.prompt == "a photo of {image} and chair and potted plant and tv"  # slot 5, with the class
    assert q285.texts == ("a photo of bear and ",) and q285.prompt == "a photo of {image} and bear and "
    region = data.images["region:139"]
    assert region.crop == (10.0, 20.0, 40.0, 50.0)  # int(float(x)) truncation, as CsvCOCO
    assert region.path == tmp_path / "coco" / "val2017_masked" / "000000000139.jpg"
    assert data.images["139"].path == tmp_path / "coco" / "val2017" / "000000000139.jpg"
    assert data.warnings == ["coco_eval.csv has 3 queries; a full draw has 4765"] and not data.blockers
    assert get_benchmark("pic2word-coco").load(tmp_path).layout == "pic2word"  # root = data/ also works


def test_region_is_the_masked_crop_squashed(tmp_path):
    data = get_benchmark("pic2word-coco").load(make_coco(tmp_path / "coco"))
    image = open_region(data.images["region:632"])  # box 5,6 -> 25,36: 20 x 30, all object (red)
    assert image.size == (REGION_SIZE, REGION_SIZE) and image.getpixel((0, 0)) == RED
    assert image.getpixel((REGION_SIZE - 1, REGION_SIZE - 1)) == RED  # squashed, not padded or centre-cropped
    assert open_region(data.images["632"]).size == (64, 56)  # targets open as they are


def test_hit_rate_by_hand(tmp_path):
    bench = get_benchmark("pic2word-coco")
    data = bench.load(make_coco(tmp_path / "coco"))
    top = {"139": ["139", "285", "632"], "285": ["632", "139", "285"], "632": ["139", "632", "285"]}
    m = bench.metrics(data, Rankings(top=top))  # targets at ranks 0, 2, 1
    assert m == pytest.approx({"R@1": 100 / 3, "R@5": 100.0, "R@10": 100.0, "R@50": 100.0, "R@100": 100.0})
    short = bench.metrics(data, Rankings(top={k: v[:2] for k, v in top.items()}))
    assert short == pytest.approx({"R@1": 100 / 3})  # a 2-deep list says nothing about R@5
    assert bench.normalise_image_id("000000000139.jpg") == "139" and bench.normalise_query_id(" 0139") == "139"
    with pytest.raises(ScoringError, match="not a COCO image id"):
        bench.normalise_image_id("region:139")


def test_bad_and_missing_files(tmp_path):
    bench = get_benchmark("pic2word-coco")
    with pytest.raises(AnnotationError, match=r"coco_eval.csv.*not released: make it with `cirbench data prepare-coco"):
        bench.load(tmp_path)
    base = make_coco(tmp_path / "coco", masked=False)
    data = bench.load(base)
    assert data.blockers == [
        f"{base / 'val2017_masked'} not found: the masked images written with the CSV; make it with "
        "`cirbench data prepare-coco --root DIR --seed 0` (or Pic2Word's "
        "data/coco/prepare_data.py)"
    ]
    spec = resolve(RunRequest("image-only", "pic2word-coco", "cirbench-tiny:random", root=base))
    with pytest.raises(DataError, match="val2017_masked not found"):
        evaluate(spec, EvalSettings(results_dir=None))
    csv = base / "coco_eval.csv"
    for text, message in [
        ("id,regions,query_class,classes\n", "the header must be id,query_regions,query_class,classes"),
        (HEADER + "000000000139.jpg,10.2;5;10.9;20 ,cat,\n", "row 2: query_regions '10.2;5;10.9;20 ' is not"),
        (HEADER + "000000000139.jpg,1;2;3 ,cat,\n", "is not 'x1;y1;x2;y2'"),
        (HEADER + "139,1;2;30;40 ,cat,\n", "id '139' is not a val2017 file name"),
        (HEADER + "000000000139.jpg,1;2;30;40 ,,\n", "empty query_class"),
        (HEADER + ROWS[0] + "\n" + ROWS[0] + "\n", "000000000139.jpg has two rows"),
    ]:
        csv.write_text(text)
        with pytest.raises(AnnotationError, match=message):
            bench.load(base)


def test_pic2word_reads_the_benchmark_sentence(tmp_path, tiny_backbone):
    """Pic2Word (paper prompts) encodes the protocol's own sentence with '*' in the image slot, on COCO and on
    ImageNet-R, instead of its template 'a photo of * , {caption}'."""
    from test_domain_benchmarks import make_pic2word_imagenet_r

    mapper = IM2TEXT(tiny_backbone.embed_dim, 48, tiny_backbone.model.token_embedding.weight.shape[1])
    path = tmp_path / "pic2word.pt"
    torch.save({"state_dict_img2text": {f"module.{k}": v for k, v in mapper.state_dict().items()}}, path)
    method = build_method("pic2word", tiny_backbone, path)
    coco = get_benchmark("pic2word-coco").load(make_coco(tmp_path / "coco"))
    imagenet = get_benchmark("pic2word-imagenet-r").load(make_pic2word_imagenet_r(tmp_path / "data", images=False))
    refs = torch.randn(2, tiny_backbone.embed_dim, generator=torch.Generator().manual_seed(0))
    for query, sentence in [
        (coco.queries[0], "a photo of * and chair and potted plant and tv"),
        (imagenet.parts[1].queries[0], "a origami of *"),
    ]:
        got = method.encode_queries([query, query], [list(query.texts)] * 2, refs)
        expected = F.normalize(method.encode_prompts([sentence, sentence], refs), dim=-1)
        torch.testing.assert_close(got, expected)


def test_eval_end_to_end(tmp_path):
    spec = resolve(RunRequest("image+text", "pic2word-coco", "cirbench-tiny:random", root=make_coco(tmp_path / "c")))
    result = evaluate(spec, EvalSettings(results_dir=tmp_path / "results")).result
    assert set(result.metrics) == {"R@1", "R@5", "R@10", "R@50", "R@100"} and result.n_queries == 3
    assert result.metrics["R@5"] == 100.0 and "squashed" in result.benchmark.facts["query_image"]
