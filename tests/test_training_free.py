"""Slerp, the score-fusion baselines and the precomputed-text adapter: formulas with known answers, exact endpoints
against image-only and text-only (split-wide galleries with reference removal and subsets, and per-query candidate
lists), per-benchmark defaults, and the texts file's formats, provenance and errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from cirbench.benchmarks import get_benchmark
from cirbench.cli import app
from cirbench.errors import MethodError, OptionError
from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve
from cirbench.features import encode_images
from cirbench.methods.slerp import slerp, slerp_weight

FIXTURES = Path(__file__).parent / "fixtures"
TINY = "cirbench-tiny:random"


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


# --------------------------------------------------------------------------------------------- formulas


def test_slerp_endpoints_norm_and_official_formula():
    v, w = unit(6, 16, 0), unit(6, 16, 1)
    assert torch.equal(slerp(v, w, 0.0), v) and torch.equal(slerp(v, w, 1.0), w)  # bit for bit
    mid = slerp(v, w, 0.3)
    torch.testing.assert_close(mid.norm(dim=-1), torch.ones(6))
    theta = torch.arccos((v * w).sum(-1, keepdim=True))
    official = (torch.sin(0.7 * theta) * v + torch.sin(0.3 * theta) * w) / torch.sin(theta)
    torch.testing.assert_close(mid, F.normalize(official, dim=-1))
    # the angle to the image is alpha * theta: slerp moves along the great circle at constant speed
    torch.testing.assert_close(torch.arccos((mid * v).sum(-1, keepdim=True)), 0.3 * theta, atol=1e-5, rtol=0)


def test_slerp_parallel_branch_and_nan_guard():
    v = unit(1, 8, 2)
    w = F.normalize(v + 1e-4 * unit(1, 8, 3), dim=-1)  # |cos| > 0.9995: the official linear branch
    torch.testing.assert_close(slerp(v, w, 0.25), F.normalize(0.75 * v + 0.25 * w, dim=-1))
    same = slerp(v, v.clone(), 0.5)  # cos may round above 1: clamped, never NaN
    assert torch.isfinite(same).all()
    torch.testing.assert_close(same, v)


def test_slerp_ranks_like_the_weighted_sum_with_beta():
    """§D.3: for each query Slerp ranks the gallery as (1 - β) s_v + β s_t, β = sin(αθ) / (sin((1-α)θ) + sin(αθ))."""
    v, w, gallery = unit(5, 32, 4), unit(5, 32, 5), unit(200, 32, 6)
    for alpha in (0.2, 0.8, 0.9):
        theta = torch.arccos((v * w).sum(-1, keepdim=True))
        beta = slerp_weight(theta, alpha)
        by_slerp = torch.argsort(slerp(v, w, alpha) @ gallery.T, dim=1, descending=True)
        by_sum = torch.argsort((1 - beta) * (v @ gallery.T) + beta * (w @ gallery.T), dim=1, descending=True)
        assert torch.equal(by_slerp, by_sum)
    # the reference's numbers: CLIP-typical cosines 0.2-0.3 give β 0.767-0.772 at α = 0.8, 0.874-0.878 at 0.9
    beta = [round(float(slerp_weight(torch.tensor(math.acos(c)), a)), 3) for a in (0.8, 0.9) for c in (0.2, 0.3)]
    assert beta == [0.767, 0.772, 0.874, 0.878]
    assert float(slerp_weight(torch.tensor(1.1), 0.5)) == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------- exact endpoints


def _run(method: str, root: Path, benchmark: str = "cirr", split: str | None = "val", **kwargs):
    request = RunRequest(method, benchmark, TINY, split, root, **kwargs)
    return evaluate(resolve(request), EvalSettings(results_dir=None))


def _same_rankings(a, b) -> None:
    assert a.rankings.top == b.rankings.top
    assert a.rankings.subset == b.rankings.subset
    assert a.result.metrics == b.result.metrics


def test_endpoints_equal_single_modalities_on_a_split_wide_gallery(cirr_split):
    """CIRR: one gallery, the reference removed, subset rankings: weight / alpha 0 and 1 are image- and text-only."""
    image, text = _run("image-only", cirr_split), _run("text-only", cirr_split)
    assert image.rankings.top != text.rankings.top  # the comparison means something
    _same_rankings(_run("fusion-sum", cirr_split, method_options={"text_weight": 0}), image)
    _same_rankings(_run("fusion-sum", cirr_split, method_options={"text_weight": "1"}), text)
    _same_rankings(_run("slerp", cirr_split, method_options={"alpha": 0.0}), image)
    _same_rankings(_run("slerp", cirr_split, method_options={"alpha": 1.0}), text)
    assert _run("fusion-sum", cirr_split, method_options={"text_weight": 0}).rankings.scores == image.rankings.scores
    # weight 0.5 ranks exactly like image+text (normalise(v + t) . g is proportional to s_v + s_t, §D.3)
    assert _run("fusion-sum", cirr_split).rankings.top == _run("image+text", cirr_split).rankings.top


def make_genecis(tmp_path: Path) -> tuple[Path, dict]:
    """The GeneCIS object-task excerpt with generated COCO images for every id it names."""
    coco = tmp_path / "val2017"
    coco.mkdir()
    ids = set()
    for task in ("focus_object", "change_object"):
        for record in json.loads((FIXTURES / "genecis" / f"{task}.json").read_text()):
            ids |= {img["val_image_id"] for img in (record["reference"], record["target"], *record["gallery"])}
    for i in sorted(ids):
        Image.new("RGB", (24, 24), ((i * 37) % 256, (i * 11) % 256, (i * 71) % 256)).save(coco / f"{i:012d}.jpg")
    return FIXTURES / "genecis", {"tasks": "focus_object,change_object", "coco_root": str(coco)}


def test_endpoints_equal_single_modalities_on_per_query_candidates(tmp_path):
    root, protocol = make_genecis(tmp_path)

    def run(method: str, **options):
        return _run(method, root, "genecis", None, method_options=options, protocol_options=protocol)

    image, text = run("image-only"), run("text-only")
    assert image.rankings.top != text.rankings.top
    _same_rankings(run("fusion-sum", text_weight=0), image)
    _same_rankings(run("fusion-sum", text_weight=1), text)
    _same_rankings(run("slerp", alpha=0), image)
    _same_rankings(run("slerp", alpha=1), text)


def test_product_ranks_by_the_product_of_cosines(cirr_split, tiny_backbone):
    """Recompute s_image * s_text from the features by hand and rank with the reference removed."""
    outcome = _run("fusion-product", cirr_split)
    data = get_benchmark("cirr").load(cirr_split, "val")
    (part,) = data.parts
    feats = encode_images(tiny_backbone, [data.images[k] for k in part.gallery])
    gallery = F.normalize(feats.rows(part.gallery).float(), dim=-1)
    for q in part.queries:
        image = gallery[part.gallery.index(q.reference)]
        text = F.normalize(tiny_backbone.encode_text([q.texts[0]]).float(), dim=-1)[0]
        score = (gallery @ image) * (gallery @ text)
        order = [
            part.gallery[i] for i in torch.argsort(score, descending=True).tolist() if part.gallery[i] != q.reference
        ]
        assert outcome.rankings.top[q.qid] == order
        assert outcome.rankings.subset[q.qid] == [m for m in order if m in q.subset]
    assert outcome.result.method.config["fusion"] == "s_image * s_text (raw cosines)"


def test_slerp_alpha_defaults_per_benchmark_and_is_recorded(cirr_split):
    def alpha(benchmark: str, **options) -> float:
        return resolve(RunRequest("slerp", benchmark, TINY, method_options=options)).method.options["alpha"]

    assert alpha("cirr") == 0.9 and alpha("circo") == 0.8 and alpha("fashioniq") == 0.8  # §D.2
    assert alpha("shapes") == 0.8 and alpha("genecis") == 0.8  # the option's own default
    assert alpha("cirr", alpha="0.25") == 0.25  # the user's value wins
    spec = resolve(RunRequest("slerp", "cirr", TINY, "val", cirr_split))
    assert spec.method.keyed_options["alpha"] == 0.9  # part of the run key
    with pytest.raises(OptionError, match=r"alpha=1.5 is not valid; expected a number in \[0, 1\]"):
        resolve(RunRequest("slerp", "cirr", TINY, method_options={"alpha": 1.5}))
    with pytest.raises(OptionError, match="text_weight='-0.1' is not valid; expected at least 0$"):
        resolve(RunRequest("fusion-sum", "cirr", TINY, method_options={"text_weight": "-0.1"}))


# --------------------------------------------------------------------------------------------- precomputed texts


def captions(root: Path) -> dict[str, str]:
    records = json.loads((root / "cirr" / "captions" / "cap.rc2.val.json").read_text())
    return {str(r["pairid"]): r["caption"] for r in records}


def test_precomputed_plain_captions_equal_text_only(cirr_split, tmp_path):
    texts = tmp_path / "captions.json"
    texts.write_text(json.dumps(captions(cirr_split)))
    _same_rankings(_run("precomputed-text", cirr_split, checkpoint=texts), _run("text-only", cirr_split))
    # the released records themselves, read through id_field / text_field: the same numbers again
    records = cirr_split / "cirr" / "captions" / "cap.rc2.val.json"
    options = {"id_field": "pairid", "text_field": "caption"}
    by_records = _run("precomputed-text", cirr_split, checkpoint=records, method_options=options)
    assert by_records.rankings.top == _run("text-only", cirr_split).rankings.top
    assert by_records.result.method.config["format"] == "records (id_field=pairid, text_field=caption)"


def test_precomputed_records_format_and_provenance(cirr_split, tmp_path):
    texts = tmp_path / "ldre_cirr_val.json"
    generated = {pid: [f"{cap} at dusk", f"{cap}, seen closer"] for pid, cap in captions(cirr_split).items()}
    provenance = {"method": "LDRE", "generator": "gpt-3.5-turbo", "source": "https://example.org/ldre_cirr_val.json"}
    texts.write_text(json.dumps({"format": "cirbench-texts/1", **provenance, "texts": generated}))
    result = _run("precomputed-text", cirr_split, checkpoint=texts).result
    config = result.method.config
    assert config["format"] == "cirbench-texts/1" and config["provenance"] == provenance
    assert config["texts_per_query"] == 2 and config["queries_used"] == 4 and config["texts_file"] == str(texts)
    assert result.method.variant == "LDRE" and "gpt-3.5-turbo" in result.method.training_data
    assert result.key_fields["checkpoint_id"] == config["texts_sha256"]  # the file's bytes identify the run


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"100": "a", "101": "b"}, "no text for 2 of 4 queries"),
        ({"100": "", "101": "b"}, "query 100: expected a non-empty text"),
        ({"format": "cirbench-texts/2", "texts": {}}, "'format' must be 'cirbench-texts/1'"),
        ([{"pairid": 100}], "record 0 lacks 'id' or 'text'"),
        ({"100": ["a", 3]}, "query 100: expected a non-empty text or a non-empty list"),
    ],
)
def test_precomputed_text_errors_are_one_line(cirr_split, tmp_path, content, message):
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(content))
    out = CliRunner().invoke(
        app,
        [
            "eval",
            "-m",
            "precomputed-text",
            "-b",
            TINY,
            "--benchmark",
            "cirr",
            "--split",
            "val",
            "--root",
            str(cirr_split),
            "--checkpoint",
            str(texts),
            "--results-dir",
            str(tmp_path / "r"),
            "--json",  # no status line before the models load: the error is the only line
        ],
    )
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1
    with pytest.raises(MethodError, match="needs --checkpoint"):
        resolve(RunRequest("precomputed-text", "cirr", TINY))


def test_list_shows_the_new_methods_and_benchmarks():
    out = CliRunner().invoke(app, ["list"])
    assert out.exit_code == 0, out.output
    for name in (
        "slerp",
        "fusion-sum",
        "fusion-product",
        "precomputed-text",
        "pic2word-imagenet-r",
        "pic2word-coco",
        "freedom-imagenet-r",
        "freedom-minidn",
        "freedom-nico",
        "freedom-ltll",
    ):
        assert name in out.output
    assert "alpha: float (default 0.8)" in out.output
