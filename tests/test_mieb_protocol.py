"""CIRR and FashionIQ under ``protocol=mieb`` (the MIEB/M-BEIR protocol bridge): M-BEIR's conversion on tiny trees
and on the real annotation files, mteb's metric definitions, parity with ``mteb.evaluate`` itself on a tiny it2i
task, per-query values that give back the metrics, the refusals, sensitivity's side-by-side row, and the leaderboard
section that keeps these rows away from the official ones."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cirbench import metrics_mieb as MM
from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.base import Rankings
from cirbench.benchmarks.mbeir import fashioniq_caption, format_string
from cirbench.benchmarks.ranks import RankingsWithPositives
from cirbench.errors import AnnotationError, OptionError
from cirbench.query_scores import official_metrics

SHARED = Path("/work/shared/annotations")

# --------------------------------------------------------------------------------------------- a tiny CIRR tree

TRAIN = [f"train-{i}-0-img0" for i in range(4)]
DEV = [f"dev-{i}-0-img{i % 2}" for i in range(10)]
TEST1 = [f"test1-{i}-1-img1" for i in range(4)]
D = DEV
# (pairid, reference, caption, target_soft)
RAW_CIRR = [
    (100, D[0], "make it green", {D[2]: 1.0}),
    (101, D[1], "add a dog", {D[3]: 1.0, D[4]: 1.0, D[5]: -1.0}),
    (102, D[2], '"show it at night"', {D[6]: 0.5, D[7]: 1.0}),
    (103, D[3], "remove the car", {D[8]: -1.0}),  # no positive: dropped
    (104, D[1], "add a dog.", {D[9]: 1.0, D[3]: 1.0}),  # same text once formatted, same reference: merged into 101
    (105, D[4], "zoom in", {D[4]: 1.0, D[0]: 1.0}),  # the reference itself is a positive (it stays in the pool)
    (106, D[5], "make it red?", {D[1]: 1.0, D[2]: 0.2}),
    (107, D[6], "  two cats\r", {D[8]: 1.0}),
]
# What M-BEIR's conversion gives (written out by hand from UniIR's cirr_data_preprocessor.py and utils.py)
EXPECTED_CIRR = {
    "100": (D[0], "Make it green.", [D[2]]),
    "101": (D[1], "Add a dog.", [D[3], D[4], D[9]]),
    "102": (D[2], "Show it at night.", [D[7]]),
    "105": (D[4], "Zoom in.", [D[4], D[0]]),
    "106": (D[5], "Make it red?", [D[1]]),
    "107": (D[6], "Two cats.", [D[8]]),
}


def _picture(i: int) -> Image.Image:
    rng = np.random.default_rng(1000 + i)
    return Image.fromarray(rng.integers(0, 256, (20 + i % 3, 24, 3), dtype=np.uint8))


def make_mieb_cirr(root: Path) -> Path:
    """SEARLE layout with all three split files (4 train, 10 val, 4 test1 images) and the val queries above."""
    (root / "cirr" / "captions").mkdir(parents=True)
    (root / "cirr" / "image_splits").mkdir(parents=True)
    n = 0
    for split, names, folder in (("train", TRAIN, "train/0"), ("val", DEV, "dev"), ("test1", TEST1, "test1")):
        (root / folder).mkdir(parents=True)
        entries = {}
        for name in names:
            _picture(n).save(root / folder / f"{name}.png")
            entries[name], n = f"./{folder}/{name}.png", n + 1
        (root / "cirr" / "image_splits" / f"split.rc2.{split}.json").write_text(json.dumps(entries))
    records = []
    for pairid, ref, caption, soft in RAW_CIRR:
        hard = next(iter(soft))
        members = [ref, hard, *[d for d in DEV if d not in (ref, hard)][:4]]
        records.append(
            {
                "pairid": pairid,
                "reference": ref,
                "target_hard": hard,
                "target_soft": soft,
                "caption": caption,
                "img_set": {"id": pairid, "members": members, "reference_rank": 0, "target_rank": 1},
            }
        )
    (root / "cirr" / "captions" / "cap.rc2.val.json").write_text(json.dumps(records))
    return root


@pytest.fixture
def mieb_cirr(tmp_path) -> Path:
    return make_mieb_cirr(tmp_path / "CIRR")


# --------------------------------------------------------------------------------------------- a tiny encoder

W_IMAGE = np.random.default_rng(7).standard_normal((48, 16))


def image_vector(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image.convert("RGB").resize((4, 4), Image.BILINEAR), dtype=np.float64).ravel() / 255.0
    v = pixels @ W_IMAGE
    return v / np.linalg.norm(v)


def text_vector(text: str) -> np.ndarray:
    v = np.random.default_rng(zlib.crc32(text.encode("utf-8"))).standard_normal(16)
    return v / np.linalg.norm(v)


def query_vector(image: Image.Image, text: str) -> np.ndarray:
    return image_vector(image) + text_vector(text)


def cirbench_rankings(data, bench) -> Rankings:
    """Every query's full ranking of the pool by cosine similarity of the tiny encoder's vectors."""
    keys = list(data.images)
    gallery = np.stack([image_vector(Image.open(data.images[k].path)) for k in keys])
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    top = {}
    for q in data.queries:
        (text,) = bench.query_texts(q)
        v = query_vector(Image.open(data.images[q.reference].path), text)
        scores = gallery @ (v / np.linalg.norm(v))
        assert len(set(np.round(scores, 6))) == len(keys)  # no ties (mteb breaks them by doc id descending)
        top[q.qid] = [keys[j] for j in np.argsort(-scores, kind="stable")]
    return Rankings(top=top)


# --------------------------------------------------------------------------------------------- conversion


def test_format_string_and_fashioniq_caption_follow_mbeir():
    assert format_string('  "show it at night"\r') == "Show it at night."
    assert format_string("why not?") == "Why not?" and format_string("Wow!") == "Wow!" and format_string("") == ""
    assert format_string("ends.") == "Ends." and format_string(None) == ""
    assert fashioniq_caption([" Is shiny and silver.", "Fit and flare"]) == "Is shiny and silver and fit and flare."
    assert fashioniq_caption(["", "na"]) == "Na." and fashioniq_caption(["", ""]) == ""
    assert fashioniq_caption(["Darker..", " short "]) == "Darker. and short."  # one final '.' dropped per caption


def test_cirr_mieb_queries_pool_and_reference_are_mbeirs(mieb_cirr):
    bench = get_benchmark("cirr")
    data = bench.load(mieb_cirr, "val", {"protocol": "mieb"})
    got = {q.qid: (q.reference, q.texts[0], list(q.gt)) for q in data.queries}
    assert got == EXPECTED_CIRR
    assert list(data.images) == TRAIN + DEV + TEST1 and data.parts[0].gallery == TRAIN + DEV + TEST1
    assert data.parts[0].remove_reference is False and all(q.subset is None for q in data.queries)
    assert data.facts["queries_in_files"] == 8 and data.facts["queries_dropped_ids"] == ["103"]
    assert data.facts["queries_merged_away"] == 1 and data.facts["queries_whose_reference_is_a_positive"] == 1
    assert data.queries[1].extra["merged"] == ["104"]
    assert any("short side resized to 256" in w for w in data.warnings)
    assert bench.query_texts(data.queries[0], "c2-and-c1-raw") == ["Make it green."]
    assert bench.main_metric_for(data.options) == "ndcg_at_10" and bench.main_metric_for({}) == "R@1"


def test_cirr_mieb_refusals(mieb_cirr):
    bench = get_benchmark("cirr")
    with pytest.raises(OptionError, match="protocol=mieb scores val only .* not test1"):
        bench.load(mieb_cirr, "test1", {"protocol": "mieb"})
    with pytest.raises(OptionError, match="protocol=mieb sets its own positives"):
        bench.load(mieb_cirr, "val", {"protocol": "mieb", "scoring": "soft"})
    with pytest.raises(OptionError, match="protocol='x' is not valid; expected one of official, mieb"):
        bench.parse_options({"protocol": "x"})
    (mieb_cirr / "cirr" / "image_splits" / "split.rc2.train.json").unlink()
    with pytest.raises(AnnotationError, match=r"pools every split's images; missing .*split\.rc2\.train\.json"):
        bench.load(mieb_cirr, "val", {"protocol": "mieb"})


def test_the_official_cirr_protocol_is_unchanged(mieb_cirr):
    data = get_benchmark("cirr").load(mieb_cirr, "val")
    assert len(data.queries) == 8 and list(data.images) == DEV and data.parts[0].remove_reference
    assert data.queries[0].texts == ("make it green",) and data.queries[0].subset is not None


@pytest.mark.skipif(not (SHARED / "cirr" / "captions" / "cap.rc2.val.json").is_file(), reason="no real CIRR files")
def test_real_cirr_val_gives_mieb_counts():
    data = get_benchmark("cirr").load(SHARED / "cirr", "val", {"protocol": "mieb"})
    assert (len(data.queries), data.gallery_size, data.facts["positives"]) == (4170, 21551, 4216)
    assert (data.facts["queries_dropped"], data.facts["queries_merged_away"]) == (5, 6)  # 4,181 - 5 - 6
    assert max(len(q.gt) for q in data.queries) == 3


@pytest.mark.skipif(not (SHARED / "fashioniq" / "image_splits").is_dir(), reason="no real FashionIQ files")
def test_real_fashioniq_val_gives_mieb_counts():
    data = get_benchmark("fashioniq").load(SHARED / "fashioniq", "val", {"protocol": "mieb"})
    assert (data.facts["queries_in_files"], len(data.queries), data.facts["positives"]) == (6016, 6003, 6014)
    assert data.gallery_size == 74381 and len(data.warnings) == 1  # the nine split files hold M-BEIR's 74,381
    assert max(len(q.gt) for q in data.queries) == 4


# --------------------------------------------------------------------------------------------- metrics


def _pytrec_like(ranking, positives, k):
    """Independent definitions: trec_eval's ndcg_cut / recall / success / mteb's MRR on one ranked list."""
    gains = [1.0 if d in positives else 0.0 for d in ranking[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(positives), k)))
    first = next((i for i, g in enumerate(gains) if g), None)
    return dcg / idcg, float(any(gains)), sum(gains) / len(positives), 0.0 if first is None else 1 / (first + 1)


def test_metric_functions_match_their_definitions():
    ranking = list("abcdefghijklmnopqrstuvwxyz")
    for positives in ({"c"}, {"a", "q"}, {"z", "b", "e"}, {"zz"}):
        ranks = sorted(ranking.index(p) for p in positives if p in ranking)
        for k in (1, 3, 5, 10, 20):
            want = _pytrec_like(ranking, positives, k)
            got = tuple(MM.PER_QUERY[m](ranks, len(positives), k) for m in MM.MEASURES)
            assert got == pytest.approx(want, abs=1e-15)
    assert MM.ndcg_at_k([0, 1], 2, 10) == 1.0 and MM.ndcg_at_k([1], 1, 10) == 1 / math.log2(3)
    with pytest.raises(ValueError, match="at least one positive"):
        MM.hit_at_k([], 0, 5)


def test_per_query_values_give_back_the_metrics_and_depth_limits_k(mieb_cirr):
    bench = get_benchmark("cirr")
    data = bench.load(mieb_cirr, "val", {"protocol": "mieb"})
    full = cirbench_rankings(data, bench)
    metrics = bench.metrics(data, full)
    assert set(metrics) == set(MM.metric_names())  # a complete list: every K, even 1000
    again = official_metrics(bench.per_query(data, full))
    assert again.keys() == metrics.keys() and all(again[m] == v for m, v in metrics.items())
    short = Rankings(top={q: r[:5] for q, r in full.top.items()})  # 5 deep: K = 1, 3, 5 only
    cut = bench.metrics(data, short)
    assert set(cut) == set(MM.metric_names((1, 3, 5))) and all(cut[m] == metrics[m] for m in cut)
    known = {q.qid: sorted(full.top[q.qid].index(g) for g in q.gt) for q in data.queries}
    positions = RankingsWithPositives(top=short.top, positive_ranks=known)  # the engine's full-ranking positions
    assert bench.metrics(data, positions) == metrics and bench.wants_positive_ranks(data)
    assert not bench.wants_positive_ranks(bench.load(mieb_cirr, "val"))


# --------------------------------------------------------------------------------------------- parity with mteb


def _tiny_mteb_task(root: Path):
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.tasks.retrieval.eng.cirr_it2i_retrieval import CIRRIT2IRetrieval

    split = json.loads((root / "cirr" / "image_splits" / "split.rc2.val.json").read_text())
    paths = {}
    for name in ("train", "val", "test1"):
        for key, rel in json.loads((root / "cirr" / "image_splits" / f"split.rc2.{name}.json").read_text()).items():
            paths[key] = root / rel.removeprefix("./")
    assert set(split) <= set(paths)
    qids = list(EXPECTED_CIRR)

    class TinyCIRRIT2IRetrieval(AbsTaskRetrieval):
        metadata = CIRRIT2IRetrieval.metadata.model_copy(
            update={"name": "TinyCIRRIT2IRetrieval", "dataset": {"path": "local/tiny-cirr", "revision": "0"}}
        )

        def load_data(self, num_proc: int | None = None, **kwargs) -> None:
            queries = Dataset.from_dict(
                {
                    "id": qids,
                    "image": [Image.open(paths[EXPECTED_CIRR[q][0]]) for q in qids],
                    "text": [EXPECTED_CIRR[q][1] for q in qids],
                }
            )
            corpus = Dataset.from_dict({"id": list(paths), "image": [Image.open(p) for p in paths.values()]})
            relevant = {q: {d: 1 for d in EXPECTED_CIRR[q][2]} for q in qids}
            split_data = RetrievalSplitData(queries=queries, corpus=corpus, relevant_docs=relevant, top_ranked=None)
            self.dataset = {"default": {"test": split_data}}
            self.data_loaded = True

    return TinyCIRRIT2IRetrieval()


def _tiny_mteb_encoder():
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta, ScoringFunction

    class TinyEncoder(AbsEncoder):
        def __init__(self) -> None:
            self.mteb_model_meta = ModelMeta.create_empty(
                {
                    "name": "cirbench-test/tiny",
                    "revision": "r0",
                    "modalities": ["image", "text"],
                    "similarity_fn_name": ScoringFunction.COSINE,
                    "training_datasets": set(),
                }
            )

        def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
            rows = []
            for batch in inputs:
                images, texts = batch.get("image"), batch.get("text")
                for i in range(len(images if images is not None else texts)):
                    rows.append(query_vector(images[i], texts[i]) if texts is not None else image_vector(images[i]))
            return np.stack(rows).astype(np.float32)

    return TinyEncoder()


def tiny_mteb_encoder(device: str = "cpu"):
    """The factory ``-o model=python:test_mieb_protocol:tiny_mteb_encoder`` names (the e2e parity test)."""
    return _tiny_mteb_encoder()


@pytest.fixture(scope="module")
def mteb_reported(tmp_path_factory) -> tuple[Path, dict]:
    """The tiny tree and what ``mteb.evaluate`` reports for the tiny encoder on it (a CIRRIT2IRetrieval-shaped
    task on the same images, with M-BEIR's queries written out by hand)."""
    pytest.importorskip("mteb")
    import mteb

    root = make_mieb_cirr(tmp_path_factory.mktemp("mieb") / "CIRR")
    result = mteb.evaluate(
        _tiny_mteb_encoder(),
        _tiny_mteb_task(root),
        cache=None,
        overwrite_strategy="always",
        show_progress_bar=False,
        encode_kwargs={"batch_size": 4},
    )
    return root, result.task_results[0].scores["test"][0]


def _assert_equal_to_mteb(ours: dict[str, float], reported: dict) -> None:
    assert reported["main_score"] == reported["ndcg_at_10"] and 0 < ours["ndcg_at_10"] < 100
    for name in MM.metric_names():  # mteb rounds to 5 decimals (MRR unrounded); cirbench reports percent
        assert abs(ours[name] / 100 - reported[name]) <= 5e-6 + 1e-12, name


def test_cirr_mieb_numbers_equal_mteb_evaluate(mteb_reported):
    """The same encoder's embeddings ranked here and scored as a rankings file by CIRR under protocol=mieb."""
    root, reported = mteb_reported
    bench = get_benchmark("cirr")
    data = bench.load(root, "val", {"protocol": "mieb"})
    _assert_equal_to_mteb(bench.metrics(data, cirbench_rankings(data, bench)), reported)


def test_cirbench_eval_with_the_mteb_method_equals_mteb_evaluate(mteb_reported, tmp_path, one_thread):
    """End to end: ``cirbench eval -m mteb -p protocol=mieb`` with the same encoder gives mteb's numbers."""
    from typer.testing import CliRunner

    from cirbench.cli import app
    from cirbench.results import iter_results

    root, reported = mteb_reported
    args = ["eval", "-m", "mteb", "-o", "model=python:test_mieb_protocol:tiny_mteb_encoder", "-p", "protocol=mieb"]
    args += ["--benchmark", "cirr", "--split", "val", "--root", str(root), "--results-dir", str(tmp_path), "--device"]
    out = CliRunner().invoke(app, [*args, "cpu"])
    assert out.exit_code == 0, out.output
    (result,) = list(iter_results(tmp_path))
    assert result.benchmark.options["protocol"] == "mieb" and result.n_queries == len(EXPECTED_CIRR)
    _assert_equal_to_mteb(result.metrics, reported)


# --------------------------------------------------------------------------------------------- FashionIQ

FIQ_SPLITS = {
    "dress": {"train": ["A1", "A2"], "val": ["B1", "B2", "B3", "B4"], "test": ["C1"]},
    "shirt": {"train": ["S1"], "val": ["S2", "S3", "X"], "test": ["S4"]},
    "toptee": {"train": ["X"], "val": ["T1", "T2", "X"], "test": ["T3"]},  # X is in shirt val and toptee too
}
FIQ_VAL = {
    "dress": [("B1", "B2", [" Is shiny.", "fit and flare"]), ("B1", "B3", ["shorter skirt", "na"])]
    + [("B1", "B4", [" shorter skirt", "na"])],  # the same text once formatted: merged with dress/1
    "shirt": [("S2", "S3", ["Darker", "longer sleeves."]), ("X", "S2", ["", "more casual"])],
    "toptee": [("T1", "T2", ["is blue", "has stripes"]), ("X", "T1", ["", "more casual"])],  # merged with shirt/1
}
EXPECTED_FIQ = {
    "dress/0": ("B1", "Is shiny and fit and flare.", ["B2"]),
    "dress/1": ("B1", "Shorter skirt and na.", ["B3", "B4"]),
    "shirt/0": ("S2", "Darker and longer sleeves.", ["S3"]),
    "shirt/1": ("X", "More casual.", ["S2", "T1"]),
    "toptee/0": ("T1", "Is blue and has stripes.", ["T2"]),
}


def make_mieb_fashioniq(root: Path) -> Path:
    (root / "captions").mkdir(parents=True)
    (root / "image_splits").mkdir()
    (root / "images").mkdir()
    for cat, splits in FIQ_SPLITS.items():
        for split, asins in splits.items():
            (root / "image_splits" / f"split.{cat}.{split}.json").write_text(json.dumps(asins))
            for asin in asins:
                _picture(zlib.crc32(asin.encode()) % 97).save(root / "images" / f"{asin}.jpg")
        records = [{"candidate": c, "target": t, "captions": caps} for c, t, caps in FIQ_VAL[cat]]
        (root / "captions" / f"cap.{cat}.val.json").write_text(json.dumps(records))
    return root


def test_fashioniq_mieb_merges_categories_over_one_pool(tmp_path):
    bench = get_benchmark("fashioniq")
    root = make_mieb_fashioniq(tmp_path / "FashionIQ")
    data = bench.load(root, "val", {"protocol": "mieb"})
    assert {q.qid: (q.reference, q.texts[0], list(q.gt)) for q in data.queries} == EXPECTED_FIQ
    assert len(data.parts) == 1 and data.parts[0].remove_reference is False
    assert data.parts[0].gallery == list(dict.fromkeys(a for s in FIQ_SPLITS.values() for v in s.values() for a in v))
    assert data.facts["queries_in_files"] == 7 and data.facts["queries_merged_away"] == 2
    assert any("holds 15 images" in w for w in data.warnings)  # not M-BEIR's 74,381: said so
    assert bench.query_texts(data.queries[0], "both-orders") == ["Is shiny and fit and flare."]  # one order only
    rng = np.random.default_rng(3)
    top = {q.qid: list(rng.permutation(data.parts[0].gallery)) for q in data.queries}
    metrics = bench.metrics(data, Rankings(top=top))
    again = official_metrics(bench.per_query(data, Rankings(top=top)))
    assert set(metrics) == set(MM.metric_names()) and all(again[m] == v for m, v in metrics.items())
    official = bench.load(root, "val")
    assert [len(p.queries) for p in official.parts] == [3, 2, 2] and official.parts[2].gallery == ["T1", "T2", "X"]
    assert bench.query_texts(official.queries[0]) == ["Is shiny and fit and flare", "fit and flare and Is shiny"]


def test_fashioniq_mieb_refusals(tmp_path):
    bench = get_benchmark("fashioniq")
    root = make_mieb_fashioniq(tmp_path / "FashionIQ")
    with pytest.raises(OptionError, match="protocol=mieb scores val only .* not test"):
        bench.load(root, "test", {"protocol": "mieb"})
    with pytest.raises(OptionError, match="merges the three categories into one query set: drop categories"):
        bench.load(root, "val", {"protocol": "mieb", "categories": ["dress"]})
    (root / "image_splits" / "split.toptee.test.json").unlink()
    with pytest.raises(AnnotationError, match=r"file missing: .*split\.toptee\.test\.json"):
        bench.load(root, "val", {"protocol": "mieb"})


# --------------------------------------------------------------------------------------------- eval, sensitivity


def test_eval_keys_the_protocol_and_sensitivity_shows_both_numbers(mieb_cirr, tmp_path, one_thread):
    """image+text on the tiny tree: the MIEB run is keyed apart and gives mteb's metrics; sensitivity lists it
    beside the official default with its own metric's name and no difference (other metric, other queries)."""
    import dataclasses

    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve
    from cirbench.stats.sensitivity import markdown, sensitivity

    settings = EvalSettings(results_dir=tmp_path / "results", device="cpu")
    request = RunRequest("image+text", "cirr", "cirbench-tiny:random", "val", mieb_cirr)
    mieb = evaluate(resolve(dataclasses.replace(request, protocol_options={"protocol": "mieb"})), settings)
    result = mieb.result
    assert result.key_fields["protocol"]["protocol"] == "mieb" and result.n_queries == 6
    assert set(result.metrics) == set(MM.metric_names())  # the 18-image pool is ranked whole: every K known
    bench = get_benchmark("cirr")
    data = bench.load(mieb_cirr, "val", {"protocol": "mieb"})
    assert bench.metrics(data, mieb.rankings) == pytest.approx(result.metrics, abs=1e-6)
    assert any("short side resized to 256" in w for w in result.benchmark.warnings)
    base, rows = sensitivity(request, settings, resamples=200)
    row = next(r for r in rows if "protocol=mieb" in r.label)
    assert row.run_key == result.run_key and row.metric == "ndcg_at_10"
    assert row.value == result.metrics["ndcg_at_10"] and math.isnan(row.delta) and math.isnan(row.p)
    assert "protocol" not in base.result.key_fields["protocol"] and "R@1" in base.metrics  # official: old keys
    table = markdown(base, rows, "R@1")
    assert f"| default | {base.metrics['R@1']:.2f} |" in table
    assert f"| ndcg_at_10 {row.value:.2f} |  |  |  |" in table and "no R@1, not compared" in table


def test_sensitivity_lists_a_variant_whose_files_are_absent(cirr_split, tmp_path, one_thread):
    """The tiny CIRR fixture has only the val split file: the MIEB row says why, the other variants still run."""
    from cirbench.evaluation import EvalSettings, RunRequest
    from cirbench.stats.sensitivity import markdown, sensitivity

    request = RunRequest("image-only", "cirr", "cirbench-tiny:random", "val", cirr_split)
    base, rows = sensitivity(request, EvalSettings(results_dir=tmp_path, device="cpu"), resamples=100)
    labels = [r.label for r in rows]
    assert labels[0] == "protocol remove_reference=False" and not math.isnan(rows[0].value)
    (mieb,) = [r for r in rows if r.label.startswith("protocol protocol=mieb (not evaluated: ")]
    assert "split.rc2.train.json" in mieb.label and math.isnan(mieb.value) and mieb.run_key == ""
    assert f"| {mieb.label} | – |  |  |  |  |" in markdown(base, rows, "R@1")


# --------------------------------------------------------------------------------------------- leaderboard


def test_leaderboard_keeps_mieb_rows_in_their_own_section():
    from cirbench.leaderboard import Entry, render_csv, render_markdown, summary_table

    official = Entry("cirr", "val", "image+text", "ViT-B-32", {"R@1": 20.0, "R@5": 50.0}, "run", run_key="aaaa1111")
    mieb = Entry(
        "cirr",
        "val",
        "image+text",
        "ViT-B-32",
        {"ndcg_at_10": 30.0, "hit_rate_at_1": 90.0, "R@1": 99.0},  # an R@1 here must not reach the official table
        "run",
        protocol=("protocol=mieb",),
        run_key="bbbb2222",
    )
    text = render_markdown([official, mieb])
    head, _, section = text.partition("## CIRR, MIEB/M-BEIR protocol (CIRRIT2IRetrieval)")
    assert "bbbb2222" not in head and "99.00" not in head and "**20.00**" in head
    assert "bbbb2222" in section and "aaaa1111" not in section and "ndcg_at_10 |" in section
    assert "**90.00**" in section and "never ranked with it" in section
    assert list(summary_table([official, mieb])["Method"]) == ["image+text"]  # the summary: official rows only
    csv = render_csv([official, mieb]).splitlines()
    assert csv[1].startswith("cirr,") and csv[2].startswith("cirr [protocol=mieb],")
    only = render_markdown([mieb])
    assert "## CIRR\n" not in only and "## CIRR, MIEB/M-BEIR protocol" in only
