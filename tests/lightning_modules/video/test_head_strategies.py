"""Heads as components, the decoding option, and metrics for steps as real videos have them."""

import functools

import pytest
import torch

from datamodules.video import InstructionalVideoDataModule
from lightning_modules.video import StepAligner
from lightning_modules.video.heads import (
    AttendAlignHead,
    LSTMAttentionHead,
    ZeroShotHead,
    ordered_truth,
)
from lightning_modules.video.metrics import StepAlignmentMetrics


@pytest.fixture(scope="module")
def align_batch(align_data):
    return next(iter(align_data.train_dataloader()))


def test_a_head_component_equals_the_same_head_by_name(tiny_encoder, data_links, align_batch):
    torch.manual_seed(0)
    by_name = StepAligner(head="lstm", encoder=tiny_encoder, hidden=16, dropout=0.0, **data_links)
    torch.manual_seed(0)
    component = functools.partial(LSTMAttentionHead, hidden=16, dropout=0.0)
    given = StepAligner(head=component, encoder=tiny_encoder, **data_links)
    assert given.hparams.head["class_path"].endswith("LSTMAttentionHead")  # a safe checkpoint
    assert given.head.name == "lstm" and type(given.head) is LSTMAttentionHead
    for a, b in zip(by_name.state_dict().values(), given.state_dict().values()):
        assert torch.equal(a, b)
    by_name.eval(), given.eval()
    assert torch.equal(by_name(align_batch)["intervals"], given(align_batch)["intervals"])


def test_a_zero_shot_component_freezes_the_encoders_and_trains_nothing(tiny_encoder, data_links):
    with pytest.warns(UserWarning, match="untrained encoders"):
        module = StepAligner(head=ZeroShotHead, encoder=tiny_encoder, **data_links)
    assert module.frozen and not any(p.requires_grad for p in module.parameters())
    assert module.training_step({}, 0) is None


def test_the_decoding_option_chooses_the_lattice(tiny_encoder, data_links, align_batch):
    made = {
        decoding: StepAligner(
            head=AttendAlignHead,
            decoding=decoding,
            order_tolerance={"order_penalty": 0.0, "skip_penalty": 0.0},
            encoder=tiny_encoder,
            **data_links,
        ).eval()
        for decoding in ("ordered", "order_tolerant")
    }
    torch.manual_seed(1)
    frames, steps = align_batch["frame_mask"].shape[1], align_batch["step_mask"].shape[1]
    logits = torch.randn(len(align_batch["video_ids"]), frames, steps + 1)
    logits[..., 1:] = logits[..., 1:].masked_fill(~align_batch["step_mask"][:, None], float("-inf"))
    ordered, _ = made["ordered"].predict_segments({"logits": logits}, align_batch)
    free, labels = made["order_tolerant"].predict_segments({"logits": logits}, align_batch)
    # free of prices, the tolerant decoding is each frame's most likely class
    real = align_batch["frame_mask"]
    assert torch.equal(labels[real], logits.argmax(-1)[real])
    assert not torch.equal(ordered, free)


def test_monotonic_loss_skips_videos_whose_truth_is_not_ordered():
    step_mask = torch.ones(3, 3, dtype=torch.bool)
    labels = torch.tensor(
        [
            [0, 1, 1, 0, 2, 3, 0],  # ordered
            [0, 2, 2, 0, 1, 3, 0],  # out of order
            [0, 1, 0, 3, 3, 0, -100],  # step 2 skipped (padding at the end)
        ]
    )
    assert ordered_truth(labels, step_mask).tolist() == [True, False, False]
    repeated = torch.tensor([[1, 0, 2, 0, 1, 3]])
    assert ordered_truth(repeated, step_mask[:1]).tolist() == [False]


def test_recall_at_1_and_step_recall_count_repeats_and_leave_skipped_steps_out():
    metrics = StepAlignmentMetrics()
    true_labels = torch.tensor([[0, 1, 1, 0, 2, 2, 0, 1, 1, 0]])  # step 1 twice; step 3 skipped
    truth = torch.tensor([[[1, 2], [4, 5], [-1, -1]]])
    step_mask = torch.ones(1, 3, dtype=torch.bool)
    predicted = torch.tensor([[[7, 8], [0, 0], [3, 3]]])  # step 1 on its repeat, step 2 wrong
    top = torch.tensor([[8, 5, 0]])  # step 1 on its repeat, step 2 right
    metrics.update(predicted, truth, step_mask, true_labels.clamp_min(0), true_labels, top)
    values = metrics.compute()
    assert values["step_recall"] == pytest.approx(0.5)  # of the 2 steps shown
    assert values["recall_at_1"] == pytest.approx(1.0)
    assert values["miou"] == pytest.approx(0.0)  # the first occurrence is the segment scored


def test_reordered_data_reaches_the_module_and_the_tolerant_decoder_scores_it(
    tiny_encoder, data_links, align_data
):
    options = {**align_data.hparams, "reorder_prob": 1.0, "skip_prob": 0.3}
    data = InstructionalVideoDataModule(**options)
    batch = next(iter(data.test_dataloader()))
    module = StepAligner(
        head="zero_shot", decoding="order_tolerant", encoder=tiny_encoder, **data_links
    )
    module.on_test_epoch_start()
    module.test_step(batch, 0)
    values = module.metrics["test"].compute()
    assert {"miou", "step_recall", "recall_at_1", "frame_acc"} <= set(values)
