"""Moment-retrieval metrics over a collection of videos, by QVHighlights' protocol.

A query (a text) has true moments, possibly several and in several videos; a system returns a
ranked list of moments (video id, start s, end s, score). As in QVHighlights' standalone
evaluation (Lei et al. 2021, the Moment-DETR paper), extended from one video to a collection by
counting two moments of different videos as disjoint (IoU 0):

- ``r1@t``: share of queries whose top moment overlaps a true one with temporal IoU >= t;
- ``r5@t``: the same for any of the top five (Charades-STA's R@5);
- ``map@t``: mean over queries of the average precision of the top ``max_predictions`` (10)
  moments at IoU threshold t: moments in score order, each matched to the not yet matched true
  moment it overlaps most, if that overlap reaches t (ActivityNet's detection AP), precision made
  monotone and summed over the recall steps (VOC 2011 interpolation); ``map`` averages
  t = 0.5, 0.55, ..., 0.95.

Values are fractions in [0, 1] (QVHighlights prints them x100). Hand-written: torchmetrics'
retrieval metrics rank documents that are relevant or not, while a moment here is right only by
how much it overlaps a true one, and each true moment may be found once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MAP_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


@dataclass(frozen=True)
class Moment:
    """A stretch of one video, in seconds, [start, end); `score` ranks retrieved moments."""

    video_id: str
    start: float
    end: float
    score: float = 0.0


def temporal_iou(predicted: Sequence[Moment], truth: Sequence[Moment]) -> np.ndarray:
    """(P, G) IoU of every predicted moment with every true one; 0 across videos."""
    iou = np.zeros((len(predicted), len(truth)))
    for i, p in enumerate(predicted):
        for j, t in enumerate(truth):
            if p.video_id != t.video_id:
                continue
            overlap = min(p.end, t.end) - max(p.start, t.start)
            union = max(p.end, t.end) - min(p.start, t.start)
            iou[i, j] = max(overlap, 0.0) / union if union > 0 else 0.0
    return iou


def recall_at(
    ranked: Mapping[str, Sequence[Moment]],
    truth: Mapping[str, Sequence[Moment]],
    k: int,
    threshold: float,
) -> float:
    """Share of the queries in `truth` with a true moment at IoU >= `threshold` among their
    top `k` retrieved moments (`ranked[query]`, best first; a missing query is a miss)."""
    if not truth:
        return float("nan")
    hits = 0
    for query, true_moments in truth.items():
        top = list(ranked.get(query, ()))[:k]
        if top and true_moments and (temporal_iou(top, true_moments) >= threshold).any():
            hits += 1
    return hits / len(truth)


def average_precision(
    predicted: Sequence[Moment], truth: Sequence[Moment], threshold: float
) -> float:
    """AP of one query's moments at one IoU threshold (ActivityNet matching, VOC 2011 envelope)."""
    if not truth or not predicted:
        return 0.0
    order = sorted(range(len(predicted)), key=lambda i: -predicted[i].score)  # stable on ties
    iou = temporal_iou([predicted[i] for i in order], truth)
    matched = np.zeros(len(truth), dtype=bool)
    true_positive = np.zeros(len(order))
    for rank, overlaps in enumerate(iou):
        for j in np.argsort(-overlaps, kind="stable"):
            if overlaps[j] < threshold:
                break  # the best free or taken overlap is too small: a false positive
            if not matched[j]:
                matched[j] = True
                true_positive[rank] = 1
                break
    hits = np.cumsum(true_positive)
    precision = hits / np.arange(1, len(order) + 1)
    recall = hits / len(truth)
    precision = np.concatenate([[0.0], precision, [0.0]])
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the monotone envelope
    steps = np.nonzero(recall[1:] != recall[:-1])[0] + 1
    return float(((recall[steps] - recall[steps - 1]) * precision[steps]).sum())


def mean_average_precision(
    ranked: Mapping[str, Sequence[Moment]],
    truth: Mapping[str, Sequence[Moment]],
    threshold: float,
    max_predictions: int = 10,
) -> float:
    """Mean over the queries in `truth` of the AP of their first `max_predictions` moments."""
    if not truth:
        return float("nan")
    return float(
        np.mean(
            [
                average_precision(list(ranked.get(q, ()))[:max_predictions], moments, threshold)
                for q, moments in truth.items()
            ]
        )
    )


def moment_retrieval_metrics(
    ranked: Mapping[str, Sequence[Moment]],
    truth: Mapping[str, Sequence[Moment]],
    max_predictions: int = 10,
) -> dict[str, float]:
    """{"r1@0.5", "r1@0.7", "r5@0.5", "map@0.5", "map@0.75", "map"} of ranked moments per query."""
    metrics = {
        "r1@0.5": recall_at(ranked, truth, 1, 0.5),
        "r1@0.7": recall_at(ranked, truth, 1, 0.7),
        "r5@0.5": recall_at(ranked, truth, 5, 0.5),
    }
    aps = {t: mean_average_precision(ranked, truth, t, max_predictions) for t in MAP_THRESHOLDS}
    metrics["map@0.5"], metrics["map@0.75"] = aps[0.5], aps[0.75]
    metrics["map"] = float(np.mean(list(aps.values())))
    return metrics
