"""Domain-conversion metrics on hand-made rankings: Radenović AP (FreeDom's fixtures), true recall, precision."""

from __future__ import annotations

import pytest

from cirbench import metrics_domain as MD


@pytest.mark.parametrize(
    ("ranks", "expected"),
    [([0, 2], 0.791663), ([1], 0.249998), ([3, 4, 9], 0.237036)],  # MORE_BENCHMARKS_AND_METHODS.md §C.3
)
def test_radenovic_ap_fixtures(ranks, expected):
    assert MD.radenovic_ap(ranks) == pytest.approx(expected, abs=1e-6)


def test_radenovic_ap_by_hand_and_edge_cases():
    # positives at 0-based ranks 1 and 3: j=0: (0/1 + 1/2)/2 = 0.25; j=1: (1/3 + 2/4)/2 = 5/12; sum / (2 + 1e-5)
    assert MD.radenovic_ap([1, 3]) == pytest.approx((0.25 + 5 / 12) / (2 + 1e-5), abs=1e-12)
    assert MD.radenovic_ap([]) == 0.0  # no positive: 0, and it still counts in the mean
    assert MD.radenovic_ap([0, 1, 2]) == pytest.approx(3 / (3 + 1e-5))  # a perfect ranking: n / (n + 1e-5)
    # a positive absent from the ranking (left out by --skip-missing) is never retrieved: it adds 0 but counts in n
    assert MD.radenovic_ap([0, 1], 3) == pytest.approx((1 + 1) / (3 + 1e-5))
    with pytest.raises(ValueError, match="3 positive positions for 2 positives"):
        MD.radenovic_ap([0, 1, 4], 2)
    with pytest.raises(ValueError, match="strictly increasing"):
        MD.radenovic_ap([2, 1])
    assert MD.mean_radenovic_ap([([0, 2], 2), ([], 0)]) == pytest.approx(100 * 0.791663 / 2, abs=1e-4)


def test_true_recall_counts_zero_positive_queries_and_is_not_a_hit_rate():
    rows = [([0, 5, 30], 3), ([12], 1), ([], 0)]  # (positive ranks, |G|)
    # K=10: 2 of 3, 0 of 1, nothing -> (2/3 + 0 + 0) / 3 = 22.2; a hit rate over the queries with a positive
    # would say 1/2 = 50
    assert MD.true_recall(rows, 10) == pytest.approx(100 * (2 / (3 + 1e-5)) / 3)
    assert MD.true_recall(rows, 50) == pytest.approx(100 * (3 / (3 + 1e-5) + 1 / (1 + 1e-5)) / 3)
    assert MD.true_recall([([], 0)], 200) == 0.0


def test_precision_conventions():
    rows = [([0, 5, 30], 3), ([1], 1)]
    assert MD.precision(rows, 10, "pic2word") == pytest.approx(100 * (2 / 10 + 1 / 10) / 2)  # hits / K
    assert MD.precision(rows, 10, "freedom") == pytest.approx(100 * (2 / (3 + 1e-5) + 1 / (1 + 1e-5)) / 2)
    with pytest.raises(ValueError, match="convention"):
        MD.precision(rows, 10, "other")
    with pytest.raises(ValueError, match="no queries"):
        MD.true_recall([], 10)
