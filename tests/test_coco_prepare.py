"""`cirbench data prepare-coco`: Pic2Word's COCO query set drawn from a seed.

Known answers: the expected CSVs below are what Pic2Word's own data/coco/prepare_data.py (google-research/
composed_image_retrieval@8c05329) wrote on this synthetic val2017 layout with ``random.seed(s)`` set first (run once,
by hand; its masked JPEGs were byte-identical to ours too, see docs/PROTOCOLS.md). Masks are checked exactly on a
hand-made run-length encoding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.coco_prepare import draw_queries, load_instances, masked_image, prepare_coco
from cirbench.cli import app
from cirbench.errors import AnnotationError, DataError, UsageError

pytest.importorskip("pycocotools")

IMAGES = [(139, 64, 48, "RGB"), (632, 40, 30, "L"), (7, 20, 20, "RGB"), (42, 50, 40, "RGB"), (1000, 32, 32, "RGB")]
# column-major runs over a 30 x 40 image: ones at rows 5..12 of columns 2..8
CROWD_COUNTS = [65, 8, 22, 8, 22, 8, 22, 8, 22, 8, 22, 8, 22, 8, 947]


def _box(index: int, image: int, category: int, bbox: list, segmentation=None, crowd: int = 0) -> dict:
    x, y, w, h = bbox
    polygon = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return {
        "id": index,
        "image_id": image,
        "category_id": category,
        "iscrowd": crowd,
        "bbox": bbox,
        "segmentation": segmentation or polygon,
    }


ANNOTATIONS = [  # image 632 first: images are taken in order of their first annotation, as upstream
    _box(1, 632, 1, [2.0, 3.0, 10.0, 8.0], {"size": [30, 40], "counts": CROWD_COUNTS}, crowd=1),
    _box(2, 139, 1, [5.5, 4.25, 20.1, 10.3]),
    _box(3, 139, 62, [30.0, 20.0, 10.0, 12.0]),
    _box(4, 139, 1, [0.0, 0.0, 60.0, 45.0]),  # over half the image: never a candidate
    _box(5, 7, 3, [0, 0, 20, 20]),  # the whole image: image 7 has no candidate and no row
    _box(6, 42, 3, [1, 2, 7, 9]),  # integer boxes stay integers in the CSV
    _box(7, 139, 3, [40.7, 1.1, 0.2, 0.2]),  # 0.04 px^2: under the 0.05 bound
    _box(8, 42, 62, [10.1, 10.2, 8.3, 3.3]),
    _box(9, 1000, 62, [3.0, 3.0, 9.0, 9.0]),
    _box(10, 1000, 62, [15.0, 15.0, 9.0, 9.0]),  # two chairs: drawing one removes "chair" from the others
]
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 62, "name": "chair"}]
UPSTREAM = {  # Pic2Word's prepare_data.py after random.seed(s)
    0: [
        "000000000042.jpg,1;2;8;11 ,car,chair",
        "000000000139.jpg,30.0;20.0;40.0;32.0 ,chair,person;car",
        "000000000632.jpg,2.0;3.0;12.0;11.0 ,person,",
        "000000001000.jpg,15.0;15.0;24.0;24.0 ,chair,",
    ],
    3: [
        "000000000042.jpg,10.1;10.2;18.4;13.5 ,chair,car",
        "000000000139.jpg,5.5;4.25;25.6;14.55 ,person,chair;car",
        "000000000632.jpg,2.0;3.0;12.0;11.0 ,person,",
        "000000001000.jpg,15.0;15.0;24.0;24.0 ,chair,",
    ],
}


def make_val2017(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    records = []
    for image_id, width, height, mode in IMAGES:
        shape = (height, width, 3) if mode == "RGB" else (height, width)
        name = f"{image_id:012d}.jpg"
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(root / "val2017" / name, quality=95)
        records.append({"id": image_id, "file_name": name, "height": height, "width": width})
    instances = {"images": records, "annotations": ANNOTATIONS, "categories": CATEGORIES}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(instances))
    return root


def expected_csv(seed: int) -> str:
    return "id,query_regions,query_class,classes\n" + "".join(row + "\n" for row in UPSTREAM[seed])


@pytest.mark.parametrize("seed", [0, 3])
def test_the_draw_equals_pic2words_script_seeded_alike(tmp_path, seed):
    root = make_val2017(tmp_path / "coco")
    record = prepare_coco(root, seed=seed)
    assert (root / "coco_eval.csv").read_text() == expected_csv(seed)
    assert record["queries"] == 4 and record["masked_written"] == 4 and record["status"] == "complete"
    assert sorted(p.name for p in (root / "val2017_masked").iterdir()) == sorted(r[:16] for r in UPSTREAM[seed])
    assert json.loads((root / "coco_prepare.json").read_text()) == record


def test_the_crowd_mask_keeps_the_instance_and_whitens_the_rest(tmp_path):
    root = make_val2017(tmp_path / "coco")
    (query,) = [
        q for q in draw_queries(load_instances(root / "annotations/instances_val2017.json"), 0) if q.image_id == 632
    ]
    source = root / "val2017" / "000000000632.jpg"
    masked = np.array(masked_image(source, query))
    original = np.array(Image.open(source))
    inside = np.zeros((30, 40), bool)
    inside[5:13, 2:9] = True  # the run-length encoding above, decoded by hand
    assert masked.shape == (30, 40) and (masked[inside] == original[inside]).all() and (masked[~inside] == 255).all()


def test_resume_refusal_overwrite_and_the_draw_in_every_result(tmp_path):
    root = make_val2017(tmp_path / "coco")
    prepare_coco(root, seed=0)
    again = prepare_coco(root, seed=0)  # the same draw: resumes, nothing rewritten
    assert again["masked_kept"] == 4 and again["masked_written"] == 0
    with pytest.raises(UsageError, match="made by seed 0; pass --overwrite"):
        prepare_coco(root, seed=3)
    prepare_coco(root, seed=3, overwrite=True)
    assert (root / "coco_eval.csv").read_text() == expected_csv(3)
    data = get_benchmark("pic2word-coco").load(root)
    assert data.facts["draw"].startswith("cirbench data prepare-coco --seed 3 (instances sha256 ")
    assert [q.qid for q in data.queries] == ["42", "139", "632", "1000"]
    (root / "coco_eval.csv").write_text(expected_csv(0))  # edited since: the record no longer names it
    assert "without a seed" in get_benchmark("pic2word-coco").load(root).facts["draw"]


def test_bad_inputs_are_one_line_errors(tmp_path):
    root = make_val2017(tmp_path / "coco")
    path = root / "annotations" / "instances_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][2]["bbox"] = [1.0, 2.0, 3.0]
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match="annotation 2: bbox .* is not four numbers"):
        prepare_coco(root)
    data["annotations"][2]["bbox"] = [30.0, 20.0, 10.0, 12.0]
    data["images"][0]["width"] = 65  # the file is 64 wide
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="000000000139.jpg is 64x48 but instances_val2017.json says 65x48"):
        prepare_coco(root, seed=0)
    missing = CliRunner().invoke(app, ["data", "prepare-coco", "--root", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "instances_val2017.json not found; pass --instances" in missing.output


def test_cli_prepares_a_query_set_the_benchmark_evaluates(tmp_path):
    root = make_val2017(tmp_path / "coco")
    done = CliRunner().invoke(app, ["data", "prepare-coco", "--root", str(root), "--seed", "3"])
    assert done.exit_code == 0, done.output
    assert "4 queries (seed 3)" in done.output and (root / "coco_eval.csv").read_text() == expected_csv(3)
    args = ["eval", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "pic2word-coco"]
    evaluated = CliRunner().invoke(app, [*args, "--root", str(root), "--results-dir", str(tmp_path / "r"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    (result,) = json.loads(evaluated.output[evaluated.output.index("[") :])
    assert result["n_queries"] == 4 and result["benchmark"]["gallery_size"] == 4
    assert result["benchmark"]["facts"]["draw"].startswith("cirbench data prepare-coco --seed 3")
