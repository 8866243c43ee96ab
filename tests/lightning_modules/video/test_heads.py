"""Heads on hand-made embeddings: where frames match their step text, the steps are found."""

import pytest
import torch

from lightning_modules.video.decoding import decode_ordered_steps
from lightning_modules.video.heads import (
    SimilarityRegressionHead,
    interval_from_weights,
    zero_shot_logits,
)

# 12 frames: step 1 on frames 2-4, step 2 on frames 7-9, background elsewhere
SEGMENTS = [[2, 4], [7, 9]]


def matching_embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    """Frames equal to their step's text embedding; background frames orthogonal to both."""
    steps = torch.eye(4)[None, :2]  # (1, 2, 4)
    frames = torch.eye(4)[2].repeat(1, 12, 1)  # background
    for k, (start, end) in enumerate(SEGMENTS):
        frames[0, start : end + 1] = steps[0, k]
    return frames, steps


def test_uniform_weights_over_a_segment_give_exactly_its_interval():
    weights = torch.zeros(1, 1, 10)
    weights[0, 0, 2:6] = 0.25  # frames 2-5 of 10 cover [0.2, 0.6) of the video
    interval = interval_from_weights(weights, torch.ones(1, 10, dtype=torch.bool))
    assert interval[0, 0].tolist() == pytest.approx([0.2, 0.6], abs=1e-5)


def test_zero_shot_finds_the_steps_when_frames_match_their_texts():
    frames, steps = matching_embeddings()
    frame_mask, step_mask = torch.ones(1, 12, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool)
    logits = zero_shot_logits(frames, steps, frame_mask, step_mask, torch.tensor(10.0))
    _, segments = decode_ordered_steps(logits.log_softmax(-1), frame_mask, step_mask)
    assert segments[0].tolist() == SEGMENTS


def test_similarity_head_starts_from_the_span_of_the_most_similar_frames():
    frames, steps = matching_embeddings()
    frame_mask, step_mask = torch.ones(1, 12, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool)
    head = SimilarityRegressionHead(sharpness=50.0)
    intervals = head(frames, steps, frame_mask, step_mask)[0]
    expected = [[2 / 12, 5 / 12], [7 / 12, 10 / 12]]
    assert intervals.tolist() == [pytest.approx(e, abs=1e-3) for e in expected]
