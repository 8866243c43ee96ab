"""GIoU and the frame cross-entropy: hand-computed values and gradients."""

import pytest
import torch

from lightning_modules.video.losses import frame_cross_entropy, giou_1d, interval_loss


def test_giou_equals_hand_computed_values():
    pred = torch.tensor([[0.2, 0.6], [0.0, 0.2], [0.1, 0.5], [0.3, 0.4]])
    target = torch.tensor([[0.4, 0.8], [0.5, 0.7], [0.1, 0.5], [0.0, 1.0]])
    # overlap 0.2 / union 0.6, hull = union; disjoint: 0 - (0.7 - 0.4) / 0.7; equal; inside: 0.1 / 1
    expected = torch.tensor([1 / 3, -3 / 7, 1.0, 0.1])
    assert torch.allclose(giou_1d(pred, target), expected, atol=1e-6)


def test_giou_pulls_disjoint_intervals_together():
    pred = torch.tensor([0.0, 0.2], requires_grad=True)
    target = torch.tensor([0.5, 0.7])
    (1 - giou_1d(pred, target)).backward()
    # plain IoU is 0 here, with no gradient; 1 - GIoU = 1 - (p1 - p0 + 0.2) / (0.7 - p0)
    # falls as the near end p1 moves towards the target: d/dp1 = -1 / 0.7
    assert pred.grad[1].item() == pytest.approx(-1 / 0.7, abs=1e-5)
    assert pred.grad[0].item() == pytest.approx(0.3 / 0.7**2, abs=1e-5)


def test_interval_loss_adds_l1_on_centre_and_width_over_real_steps_only():
    pred = torch.tensor([[[0.2, 0.6], [0.0, 1.0]]], requires_grad=True)
    target = torch.tensor([[[0.4, 0.8], [0.3, 0.3]]])
    mask = torch.tensor([[True, False]])
    loss = interval_loss(pred, target, mask, giou_weight=1.0, l1_weight=2.0)
    # 1 - 1/3 + 2 * (|0.4 - 0.6| + |0.4 - 0.4|)
    assert loss.item() == pytest.approx(2 / 3 + 0.4, abs=1e-6)
    loss.backward()
    assert pred.grad[0, 1].abs().sum() == 0 and pred.grad[0, 0].abs().sum() > 0


def test_frame_cross_entropy_smooths_only_over_the_videos_own_steps():
    # one video, 3 frames, 2 step slots of which only step 1 is real
    logits = torch.tensor([[[0.0, 1.0, 5.0], [2.0, 0.0, 5.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[1, 0, -100]])
    step_mask = torch.tensor([[True, False]])
    log_p = torch.log_softmax(logits[0, :2, :2], -1)  # the padded step 2 does not exist
    nll = -(log_p[0, 1] + log_p[1, 0]) / 2
    assert frame_cross_entropy(logits, labels, step_mask).item() == pytest.approx(nll.item())
    uniform = -log_p.mean(-1).mean()
    smoothed = 0.9 * nll + 0.1 * uniform
    value = frame_cross_entropy(logits, labels, step_mask, label_smoothing=0.1)
    assert value.item() == pytest.approx(smoothed.item(), abs=1e-6)
