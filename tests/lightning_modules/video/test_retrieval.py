"""Moment-retrieval metrics (QVHighlights' protocol) against values worked out by hand."""

import pytest

from lightning_modules.video.retrieval import (
    Moment,
    average_precision,
    moment_retrieval_metrics,
    recall_at,
    temporal_iou,
)

# Query "q": three true moments in two videos; five retrieved, best first.
TRUTH_Q = [Moment("v1", 0, 10), Moment("v1", 20, 30), Moment("v2", 0, 4)]
RANKED_Q = [
    Moment("v1", 0, 10, 0.9),  # IoU 1 with v1 [0, 10): hit
    Moment("v1", 1, 10, 0.8),  # IoU 0.9, but with the moment already found: a false positive
    Moment("v2", 0, 8, 0.7),  # IoU 0.5 with v2 [0, 4): a hit at 0.5, not at 0.75
    Moment("v3", 0, 5, 0.6),  # a video with no true moment
    Moment("v1", 22, 30, 0.5),  # IoU 0.8 with v1 [20, 30)
]
# Query "r": the top moment is in the wrong video, the second overlaps 0.6, the third 0.8.
TRUTH_R = [Moment("v2", 10, 20)]
RANKED_R = [Moment("v1", 10, 20, 0.9), Moment("v2", 14, 20, 0.8), Moment("v2", 12, 20, 0.7)]


def test_temporal_iou_is_zero_across_videos_and_continuous_within_one():
    iou = temporal_iou([Moment("a", 0, 10), Moment("b", 0, 10)], [Moment("a", 5, 15)])
    assert iou[:, 0].tolist() == pytest.approx([5 / 15, 0.0])


def test_average_precision_matches_each_true_moment_once():
    # at 0.5: hits at ranks 1, 3, 5 -> precision 1, 2/3, 3/5 at recall 1/3, 2/3, 1
    assert average_precision(RANKED_Q, TRUTH_Q, 0.5) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # at 0.75: hits at ranks 1 and 5 (2/5), the third true moment never found
    assert average_precision(RANKED_Q, TRUTH_Q, 0.75) == pytest.approx((1 + 2 / 5) / 3)
    assert average_precision(RANKED_R, TRUTH_R, 0.5) == pytest.approx(1 / 2)
    assert average_precision(RANKED_R, TRUTH_R, 0.75) == pytest.approx(1 / 3)


def test_average_precision_ranks_by_score_not_by_list_order():
    shuffled = list(reversed(RANKED_Q))
    assert average_precision(shuffled, TRUTH_Q, 0.5) == average_precision(RANKED_Q, TRUTH_Q, 0.5)


def test_moment_retrieval_metrics_by_hand():
    ranked, truth = {"q": RANKED_Q, "r": RANKED_R}, {"q": TRUTH_Q, "r": TRUTH_R}
    metrics = moment_retrieval_metrics(ranked, truth)
    assert metrics["r1@0.5"] == 0.5  # q's top moment is right, r's is in another video
    assert metrics["r1@0.7"] == 0.5
    assert metrics["r5@0.5"] == 1.0  # r's second moment overlaps 0.6
    assert metrics["map@0.5"] == pytest.approx(((1 + 2 / 3 + 3 / 5) / 3 + 1 / 2) / 2)
    assert metrics["map@0.75"] == pytest.approx(((1 + 2 / 5) / 3 + 1 / 3) / 2)
    assert metrics["map@0.5"] >= metrics["map"] >= 0.0


def test_a_query_without_moments_is_a_miss_and_only_the_first_ten_count():
    truth = {"q": TRUTH_Q[:1], "nothing returned": [Moment("v9", 0, 1)]}
    assert recall_at({"q": RANKED_Q}, truth, 1, 0.5) == 0.5
    # the one right moment at rank 11 is past the ten that mAP reads
    late = [Moment("x", 0, 1, 1.0 - i / 100) for i in range(10)] + [Moment("v1", 0, 10, 0.0)]
    assert moment_retrieval_metrics({"q": late}, {"q": TRUTH_Q[:1]})["map@0.5"] == 0.0
    assert moment_retrieval_metrics({"q": late}, {"q": TRUTH_Q[:1]}, max_predictions=11)[
        "map@0.5"
    ] == pytest.approx(1 / 11)
