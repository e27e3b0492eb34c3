"""Hand-computed cases for the official metric definitions in cirbench.metrics."""

from __future__ import annotations

import pytest

from cirbench import metrics as M


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-9)


# --------------------------------------------------------------------------------------------- CIRCO


def test_circo_ap_normaliser_is_min_gt_k() -> None:
    # 3 GTs, only one retrieved, at rank 1: AP@5 = (1/1) / min(3, 5) = 1/3, not 1 (the #hits normaliser)
    assert M.circo_average_precision(["a", "x", "y"], ["a", "b", "c"], 5) == approx(1 / 3)
    out = M.circo_metrics([["a", "x", "y"]], [["a", "b", "c"]], ["a"])
    assert out["mAP@5"] == approx(100 / 3)
    # 10 GTs, top-5 all hits: normaliser min(10, 5) = 5 -> AP@5 = 1
    gts = [str(i) for i in range(10)]
    assert M.circo_average_precision(gts[:5], gts, 5) == approx(1.0)
    # hits at ranks 1 and 3 with 2 GTs: (1/1 + 2/3) / 2
    assert M.circo_average_precision(["a", "x", "b"], ["a", "b"], 5) == approx((1 + 2 / 3) / 2)
    # a hit beyond K does not count; a list shorter than K is fine
    assert M.circo_average_precision(["p", "q", "r", "s", "t", "a"], ["a"], 5) == 0.0
    assert M.circo_average_precision([], ["a"], 5) == 0.0


def test_circo_duplicates_raise() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        M.circo_average_precision(["a", "b", "a"], ["a"], 5)
    with pytest.raises(ValueError, match="duplicate"):
        M.circo_metrics([["a", "a"]], [["a"]], ["a"])


def test_circo_recall_uses_single_target_and_strips_padding() -> None:
    # another GT at rank 1, the target at rank 6: R@5 misses, R@10 hits, mAP@5 still credits the other GT
    preds = [["g2", "x1", "x2", "x3", "x4", "t"]]
    out = M.circo_metrics(preds, [["t", "g2", ""]], ["t"], ks=(5, 10))
    assert out["R@5"] == 0.0 and out["R@10"] == 100.0
    assert out["mAP@5"] == approx(100 * 1 / 2)  # '' padding is not a GT: min(2, 5) = 2


def test_circo_per_aspect_map10() -> None:
    preds = [["a"], ["x", "b"]]
    out = M.circo_metrics(preds, [["a"], ["b"]], ["a", "b"], aspects=[["cardinality"], ["cardinality", "negation"]])
    assert out["mAP@10_cardinality"] == approx(100 * (1 + 0.5) / 2)
    assert out["mAP@10_negation"] == approx(50.0)
    assert "mAP@10_viewpoint" not in out  # only aspects that occur


# --------------------------------------------------------------------------------------------- CIRR


def test_cirr_reference_removal_and_subset() -> None:
    members = ["a", "b", "ref", "t", "c", "d"]
    subset = [m for m in members if m != "ref"]
    ranking = ["ref", "t", "x", "y"] + [f"z{i}" for i in range(60)] + ["a", "b", "c", "d"]
    out = M.cirr_metrics([ranking], ["ref"], ["t"], [subset])
    assert out["R@1"] == 100.0 and out["Rsubset@1"] == 100.0
    kept = M.cirr_metrics([ranking], ["ref"], ["t"], [subset], remove_reference=False)
    assert kept["R@1"] == 0.0 and kept["R@5"] == 100.0

    # subset ranking derived from the full ranking in ranked order: b, t, a, ... -> Rs@1 miss, Rs@2 hit
    ranking = ["ref", "x", "b", "t", "a", "c", "d"]
    out = M.cirr_metrics([ranking], ["ref"], ["t"], [members])
    assert out["Rsubset@1"] == 0.0 and out["Rsubset@2"] == 100.0 and out["R@1"] == 0.0 and out["R@5"] == 100.0
    assert M.cirr_subset_ranking(ranking, "ref", members) == ["b", "t", "a", "c", "d"]


def test_cirr_explicit_subset_ranking() -> None:
    subset = ["a", "b", "t", "c", "d"]
    # the reference inside a subset ranking is dropped; order kept
    out = M.cirr_metrics([["t"]], ["ref"], ["t"], [subset], subset_rankings=[["ref", "a", "t", "b"]])
    assert out["Rsubset@1"] == 0.0 and out["Rsubset@2"] == 100.0
    with pytest.raises(ValueError, match="outside"):
        M.cirr_metrics([["t"]], ["ref"], ["t"], [subset], subset_rankings=[["zzz", "t"]])


def test_cirr_truncated_ranking_without_subset_is_ambiguous() -> None:
    # target not in the top list and fewer than 3 members seen: the subset rank cannot be known
    with pytest.raises(ValueError, match="ambiguous"):
        M.cirr_metrics([["x", "a"]], ["ref"], ["t"], [["a", "b", "t", "c", "d"]])
    # with 3 members ranked above everything else it is a certain miss
    out = M.cirr_metrics([["a", "b", "c"]], ["ref"], ["t"], [["a", "b", "t", "c", "d"]])
    assert out["Rsubset@3"] == 0.0


def test_cirr_soft_scores() -> None:
    soft = {"t": 1.0, "u": 0.5, "ref": 1.0, "v": -1.0}
    ranking = ["ref", "u", "t", "v"]  # after removing the reference: u, t, v
    out = M.cirr_soft_metrics([ranking], ["ref"], [soft], [["u", "t", "v", "w", "y"]], ks=(1, 2))
    assert out["R@1"] == approx(50.0)  # partial credit of u, never the reference's 1.0
    assert out["R@2"] == approx(100.0)
    assert out["Rsubset@1"] == approx(50.0)
    # only a -1 image in the top-K: floored at 0
    out = M.cirr_soft_metrics([["v", "u"]], ["ref"], [soft], [["u", "t", "v", "w", "y"]], ks=(1,), subset_ks=(1,))
    assert out["R@1"] == 0.0


# --------------------------------------------------------------------------------------------- FashionIQ


def test_fashioniq_per_category_and_average() -> None:
    hit = (["x"] * 9 + ["t"], "t")  # target at rank 10
    late = (["x"] * 10 + ["t"], "t")  # target at rank 11: R@10 miss, R@50 hit
    two = M.fashioniq_metrics({"dress": ([hit[0], late[0]], ["t", "t"]), "shirt": ([hit[0]], ["t"])})
    assert two["dress_R@10"] == 50.0 and two["dress_R@50"] == 100.0 and two["shirt_R@10"] == 100.0
    assert "avg_R@10" not in two  # only emitted when all three categories are present
    three = M.fashioniq_metrics(
        {"dress": ([hit[0], late[0]], ["t", "t"]), "shirt": ([hit[0]], ["t"]), "toptee": ([late[0]], ["t"])}
    )
    assert three["avg_R@10"] == approx((50 + 100 + 0) / 3)
    assert three["avg_R@50"] == approx(100.0)


# --------------------------------------------------------------------------------------------- GeneCIS


def test_genecis_stable_tie_rule() -> None:
    # candidate 0 is the target; ties keep input order so the target wins them
    assert M.stable_rank([0.5, 0.9, 0.5, 0.5]) == [1, 0, 2, 3]
    assert M.stable_rank([0.3, 0.3, 0.3])[0] == 0
    # change_object.json[19] style: target also among the distractors, identical score
    cands = ["t", "a", "b", "t"]
    ranked = [cands[i] for i in M.stable_rank([0.7, 0.8, 0.1, 0.7])]
    assert ranked == ["a", "t", "t", "b"]


def test_genecis_metrics_per_task_and_average() -> None:
    out = M.genecis_metrics(
        {
            "change_object": ([["t", "a"], ["a", "t"]], ["t", "t"]),
            "focus_object": ([["a", "b", "t"]], ["t"]),
        }
    )
    assert out["change_object_R@1"] == 50.0 and out["change_object_R@2"] == 100.0
    assert out["focus_object_R@1"] == 0.0 and out["focus_object_R@3"] == 100.0
    assert out["avg_R@1_2tasks"] == approx(25.0) and "avg_R@1" not in out


def test_inputs_must_align() -> None:
    with pytest.raises(ValueError, match="differ"):
        M.recall_at_k([["a"]], ["a", "b"], (1,))
    with pytest.raises(ValueError, match="no queries"):
        M.recall_at_k([], [], (1,))
