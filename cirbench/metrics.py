"""Official CIR metrics as pure functions: ranked id lists in, percentages out.

Every function mirrors one upstream implementation (cited per function) so numbers are comparable with the
published tables. Inputs are aligned per-query sequences; nothing here reads files or touches torch.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

CIRCO_KS: tuple[int, ...] = (5, 10, 25, 50)
CIRR_KS: tuple[int, ...] = (1, 5, 10, 50)
CIRR_SUBSET_KS: tuple[int, ...] = (1, 2, 3)
FASHIONIQ_KS: tuple[int, ...] = (10, 50)
FASHIONIQ_CATEGORIES: tuple[str, ...] = ("dress", "shirt", "toptee")
GENECIS_KS: tuple[int, ...] = (1, 2, 3)
GENECIS_TASKS: tuple[str, ...] = ("focus_attribute", "change_attribute", "focus_object", "change_object")
CIRCO_ASPECTS: tuple[str, ...] = (
    "cardinality",
    "addition",
    "negation",
    "direct_addressing",
    "compare_change",
    "comparative_statement",
    "statement_with_conjunction",
    "spatial_relations_background",
    "viewpoint",
)


def _check_aligned(name: str, *seqs: Sequence) -> int:
    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        raise ValueError(f"{name}: per-query inputs differ in length: {[len(s) for s in seqs]}")
    n = lengths.pop()
    if n == 0:
        raise ValueError(f"{name}: no queries to score")
    return n


def hits_at_k(rankings: Sequence[Sequence[Hashable]], targets: Sequence[Hashable], k: int) -> list[int]:
    """Per query: 1 when its target is among the first K ranked ids, else 0 (the terms of ``recall_at_k``)."""
    return [int(t in list(r[:k])) for r, t in zip(rankings, targets, strict=True)]


def recall_at_k(
    rankings: Sequence[Sequence[Hashable]], targets: Sequence[Hashable], ks: Sequence[int]
) -> dict[int, float]:
    """Percentage of queries whose target id is among the first K ranked ids, for each K."""
    n = _check_aligned("recall_at_k", rankings, targets)
    return {k: 100.0 * sum(t in list(r[:k]) for r, t in zip(rankings, targets, strict=True)) / n for k in ks}


def drop_reference(ranking: Sequence[Hashable], reference: Hashable) -> list[Hashable]:
    """The ranking without the reference image (CIRR protocol, SEARLE validate.py#L198-L202)."""
    return [g for g in ranking if g != reference]


# --------------------------------------------------------------------------------------------- CIRCO


def circo_average_precision(predictions: Sequence[Hashable], gts: Sequence[Hashable], k: int) -> float:
    """AP@K of one query as a fraction (miccunifi/CIRCO evaluation.py#L53-L60).

    The normaliser is ``min(len(gts), k)``, not the number of hits; duplicates raise like the official server.
    """
    preds = list(predictions)
    if len(set(preds)) != len(preds):
        dups = sorted({str(p) for p in preds if preds.count(p) > 1})
        raise ValueError(f"duplicate ids in a CIRCO prediction list: {dups[:5]}")
    gt = {g for g in gts if g != ""}  # SEARLE pads GT lists with '' (collate); never count padding
    if not gt:
        raise ValueError("a CIRCO query needs at least one ground-truth id")
    hits = np.array([p in gt for p in preds[:k]], dtype=float)
    if hits.size == 0:
        return 0.0
    prec = hits * np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(prec.sum() / min(len(gt), k))


def circo_metrics(
    predictions: Sequence[Sequence[Hashable]],
    gts: Sequence[Sequence[Hashable]],
    targets: Sequence[Hashable],
    aspects: Sequence[Sequence[str]] | None = None,
    ks: Sequence[int] = CIRCO_KS,
) -> dict[str, float]:
    """CIRCO ``mAP@K`` and ``R@K`` (single ``target_img_id`` only), in percent.

    With ``aspects`` (each query's ``semantic_aspects``) it also returns ``mAP@10_<aspect>``: AP@10 averaged
    over the queries carrying that aspect, one key per aspect present (CIRCO evaluation.py#L66-L68).
    """
    n = _check_aligned("circo_metrics", predictions, gts, targets)
    ap = {k: [circo_average_precision(p, g, k) for p, g in zip(predictions, gts, strict=True)] for k in ks}
    out = {f"mAP@{k}": 100.0 * float(np.mean(v)) for k, v in ap.items()}
    out.update({f"R@{k}": v for k, v in recall_at_k(predictions, targets, ks).items()})
    if aspects is not None:
        _check_aligned("circo_metrics aspects", aspects, targets)
        pairs = zip(predictions, gts, strict=True)
        ap10 = ap[10] if 10 in ap else [circo_average_precision(p, g, 10) for p, g in pairs]
        present = [a for a in CIRCO_ASPECTS if any(a in q for q in aspects)]
        present += sorted({a for q in aspects for a in q} - set(CIRCO_ASPECTS))
        for a in present:
            vals = [ap10[i] for i in range(n) if a in aspects[i]]
            out[f"mAP@10_{a}"] = 100.0 * float(np.mean(vals))
    return out


# --------------------------------------------------------------------------------------------- CIRR


def cirr_subset_ranking(ranking: Sequence[Hashable], reference: Hashable, subset: Sequence[Hashable]) -> list[Hashable]:
    """Members minus the reference in ranked order (SEARLE validate.py#L208-L210)."""
    members = set(subset) - {reference}
    return [g for g in ranking if g in members]


def subset_rows(
    rankings: Sequence[Sequence[Hashable]],
    references: Sequence[Hashable],
    subsets: Sequence[Sequence[Hashable]],
    targets: Sequence[Hashable] | None,
    subset_rankings: Sequence[Sequence[Hashable] | None] | None,
    max_k: int,
) -> list[list[Hashable]]:
    """Each query's ranking within its group (members minus the reference): given, or read off the full ranking
    (refused when a truncated full ranking leaves it ambiguous)."""
    rows = []
    for i, (ref, subset) in enumerate(zip(references, subsets, strict=True)):
        members = set(subset) - {ref}
        given = None if subset_rankings is None else subset_rankings[i]
        if given is not None:
            row = [g for g in given if g != ref]
            bad = [g for g in row if g not in members]
            if bad:
                raise ValueError(f"query {i}: subset ranking has ids outside members minus reference: {bad[:3]}")
        else:
            row = cirr_subset_ranking(rankings[i], ref, subset)
            complete = len(row) >= min(max_k, len(members))
            if not complete and (targets is None or targets[i] not in row):
                raise ValueError(
                    f"query {i}: the full ranking is truncated and holds only {len(row)} subset members, so "
                    "the "
                    "subset ranking is ambiguous; pass the subset ranking explicitly (Rankings.subset)"
                )
        rows.append(row)
    return rows


def cirr_metrics(
    rankings: Sequence[Sequence[Hashable]],
    references: Sequence[Hashable],
    targets: Sequence[Hashable],
    subsets: Sequence[Sequence[Hashable]],
    subset_rankings: Sequence[Sequence[Hashable] | None] | None = None,
    ks: Sequence[int] = CIRR_KS,
    subset_ks: Sequence[int] = CIRR_SUBSET_KS,
    remove_reference: bool = True,
) -> dict[str, float]:
    """CIRR ``R@K`` and ``Rsubset@K`` on ``target_hard`` (SEARLE validate.py#L193-L222), in percent.

    The reference is dropped from every ranking first, so pass at least ``max(ks) + 1`` ids. ``subsets`` are
    the group members (the reference is removed here too). The subset ranking comes from ``subset_rankings``
    when given for a query, else it is the full ranking filtered to the subset, order kept.
    """
    _check_aligned("cirr_metrics", rankings, references, targets, subsets)
    pairs = zip(rankings, references, strict=True)
    full = [drop_reference(r, ref) if remove_reference else list(r) for r, ref in pairs]
    out = {f"R@{k}": v for k, v in recall_at_k(full, targets, ks).items()}
    sub = subset_rows(full, references, subsets, targets, subset_rankings, max(subset_ks))
    out.update({f"Rsubset@{k}": v for k, v in recall_at_k(sub, targets, subset_ks).items()})
    return out


def soft_at_k(ranking: Sequence[Hashable], soft: Mapping[Hashable, float], k: int) -> float:
    top = set(ranking[:k])
    return max([0.0] + [float(s) for img, s in soft.items() if img in top])


def cirr_soft_metrics(
    rankings: Sequence[Sequence[Hashable]],
    references: Sequence[Hashable],
    target_softs: Sequence[Mapping[Hashable, float]],
    subsets: Sequence[Sequence[Hashable]],
    subset_rankings: Sequence[Sequence[Hashable] | None] | None = None,
    ks: Sequence[int] = CIRR_KS,
    subset_ks: Sequence[int] = CIRR_SUBSET_KS,
) -> dict[str, float]:
    """CIRPLANT's soft variant: per query ``max(target_soft[img] for img in top-K)`` floored at 0, in percent.

    Partial credit (0.5, 0.2) counts; -1 entries never do. The reference is always removed first, so the 37
    val queries whose ``target_soft`` lists the reference cannot score through it
    (OSCAR_CIRPLANT.py#L294-L330).
    """
    n = _check_aligned("cirr_soft_metrics", rankings, references, target_softs, subsets)
    full = [drop_reference(r, ref) for r, ref in zip(rankings, references, strict=True)]
    sub = subset_rows(full, references, subsets, None, subset_rankings, max(subset_ks))
    out: dict[str, float] = {}
    for label, rows, kk in (("R", full, ks), ("Rsubset", sub, subset_ks)):
        for k in kk:
            total = sum(soft_at_k(r, s, k) for r, s in zip(rows, target_softs, strict=True))
            out[f"{label}@{k}"] = 100.0 * total / n
    return out


# --------------------------------------------------------------------------------------------- FashionIQ


def fashioniq_metrics(
    per_category: Mapping[str, tuple[Sequence[Sequence[Hashable]], Sequence[Hashable]]],
    ks: Sequence[int] = FASHIONIQ_KS,
) -> dict[str, float]:
    """``<category>_R@K`` per category (reference not removed; SEARLE validate.py#L94-L105), in percent.

    ``avg_R@K`` (plain mean over categories, validate.py#L507-L508) is emitted only when all three official
    categories are present, so a partial run can never be mistaken for the published average.
    """
    out: dict[str, float] = {}
    for cat, (rankings, targets) in per_category.items():
        out.update({f"{cat}_R@{k}": v for k, v in recall_at_k(rankings, targets, ks).items()})
    if set(FASHIONIQ_CATEGORIES) <= set(per_category):
        for k in ks:
            out[f"avg_R@{k}"] = float(np.mean([out[f"{c}_R@{k}"] for c in FASHIONIQ_CATEGORIES]))
    return out


# --------------------------------------------------------------------------------------------- GeneCIS


def stable_rank(scores: Sequence[float] | np.ndarray) -> list[int]:
    """Candidate indices by score descending, ties kept in input order.

    GeneCIS tie rule: with candidates ``[target] + gallery`` a tie is resolved in favour of the target
    (index 0).
    Upstream's ``torch.sort`` is unstable, so its tie order is undefined; this matters for
    ``change_object.json[19]``, whose target also appears among its distractors with an identical score.
    """
    return np.argsort(-np.asarray(scores, dtype=float), kind="stable").tolist()


def genecis_metrics(
    per_task: Mapping[str, tuple[Sequence[Sequence[Hashable]], Sequence[Hashable]]],
    ks: Sequence[int] = GENECIS_KS,
) -> dict[str, float]:
    """``<task>_R@K`` (target id within the top-K ranked candidate ids) and ``avg_R@1``, in percent.

    Rankings should come from :func:`stable_rank` (see its tie rule). ``avg_R@1`` is the plain mean of the
    per-task R@1 and, like the published headline (genecis README#L93-L97), needs all four tasks; over fewer
    tasks the mean is reported as ``avg_R@1_<n>tasks`` so it is never mistaken for the headline.
    """
    out: dict[str, float] = {}
    for task, (rankings, targets) in per_task.items():
        out.update({f"{task}_R@{k}": v for k, v in recall_at_k(rankings, targets, ks).items()})
    if per_task and 1 in ks:
        name = "avg_R@1" if set(per_task) >= set(GENECIS_TASKS) else f"avg_R@1_{len(per_task)}tasks"
        out[name] = float(np.mean([out[f"{t}_R@1"] for t in per_task]))
    return out
