"""Step-alignment and retrieval metrics equal hand-computed values on tiny examples."""

import pytest
import torch

from lightning_modules.video.metrics import StepAlignmentMetrics, TextToFrameRecall, segment_iou


def test_segment_iou_counts_inclusive_frames():
    pred = torch.tensor([[0.0, 3.0], [5.0, 5.0], [0.0, 1.0]])
    true = torch.tensor([[2.0, 5.0], [5.0, 5.0], [3.0, 4.0]])
    # frames 2-3 shared of 0-5; the same single frame; disjoint
    assert segment_iou(pred, true).tolist() == pytest.approx([2 / 6, 1.0, 0.0])


def test_alignment_metrics_equal_hand_computed_values():
    metric = StepAlignmentMetrics()
    # video 0: 10 frames, 2 steps; video 1: 6 frames, 1 step (+1 padded step, + 4 padded frames)
    true_segments = torch.tensor([[[1, 4], [6, 8]], [[0, 3], [0, 0]]])
    pred_segments = torch.tensor([[[2, 4], [8, 9]], [[-1, -1], [-1, -1]]])
    step_mask = torch.tensor([[True, True], [True, False]])
    true_labels = torch.tensor(
        [[0, 1, 1, 1, 1, 0, 2, 2, 2, 0], [1, 1, 1, 1, 0, 0, -100, -100, -100, -100]]
    )
    pred_labels = torch.tensor([[0, 0, 1, 1, 1, 0, 0, 0, 2, 2], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    metric.update(
        pred_segments[:1], true_segments[:1], step_mask[:1], pred_labels[:1], true_labels[:1]
    )
    metric.update(
        pred_segments[1:], true_segments[1:], step_mask[1:], pred_labels[1:], true_labels[1:]
    )
    values = metric.compute()
    # IoUs: 3/4, 1/4, and 0 for the unpredicted step
    assert values["miou"].item() == pytest.approx((0.75 + 0.25 + 0) / 3)
    assert values["recall_iou0.3"].item() == pytest.approx(1 / 3)
    assert values["recall_iou0.5"].item() == pytest.approx(1 / 3)
    assert values["recall_iou0.7"].item() == pytest.approx(1 / 3)
    # middles: floor(6/2) = 3 in [1, 4]; floor(17/2) = 8 in [6, 8]; none for the missing step
    assert values["step_recall"].item() == pytest.approx(2 / 3)
    # video 0: frames 0, 2, 3, 4, 5, 8 right; video 1: frames 4, 5 (padding not counted)
    assert values["frame_acc"].item() == pytest.approx((6 + 2) / 16)


def test_text_to_frame_recall_counts_a_synonym_frame_as_a_hit():
    metric = TextToFrameRecall(top_k=(1, 2))
    frames = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # text 0 is nearest frame 2, which shows the same step (id 7) as its own frame 0: a hit;
    # text 1 (id 8) is nearest frame 0 (id 7), then its own frame 1: a hit at 2 only;
    # text 2 (id 7) is nearest its own frame 0: a hit
    texts = torch.tensor([[-1.0, 0.1], [1.0, 0.5], [1.0, 0.0]])
    text_ids = torch.tensor([7, 8, 7])
    metric.update(frames, texts, text_ids, torch.tensor([False, True, False]))
    values = metric.compute()
    assert values["recall_at_1"].item() == pytest.approx(2 / 3)
    assert values["recall_at_2"].item() == pytest.approx(1.0)
    assert values["heldout_recall_at_1"].item() == 0.0
    assert values["heldout_recall_at_2"].item() == 1.0
