"""Ordered step decoding: Viterbi and the forward algorithm equal brute force over labellings."""

import itertools

import pytest
import torch

from lightning_modules.video.decoding import (
    decode_ordered_steps,
    labelling_score,
    labels_from_segments,
    ordered_log_partition,
    random_segments,
    segments_from_labels,
)


def ordered_labellings(frames: int, steps: int):
    """Every labelling 0* 1+ 0* 2+ ... steps+ 0* of `frames` frames."""
    for labels in itertools.product(range(steps + 1), repeat=frames):
        blocks = [k for k, _ in itertools.groupby(labels) if k != 0]
        if blocks == list(range(1, steps + 1)):
            yield labels


def brute_force(log_probs: torch.Tensor, steps: int) -> tuple[float, list[int], float]:
    """(best score, best labelling, log-sum-exp of all scores) of one video (T, S + 1)."""
    scored = [
        (sum(log_probs[t, k].item() for t, k in enumerate(labels)), list(labels))
        for labels in ordered_labellings(len(log_probs), steps)
    ]
    best_score, best_labels = max(scored)
    return best_score, best_labels, torch.tensor([s for s, _ in scored]).logsumexp(0).item()


@pytest.mark.parametrize("frames,steps", [(1, 1), (4, 1), (5, 2), (6, 3), (7, 2), (3, 3)])
def test_viterbi_and_partition_equal_brute_force(frames, steps):
    torch.manual_seed(frames * 10 + steps)
    log_probs = torch.randn(1, frames, steps + 1).log_softmax(-1)
    frame_mask = torch.ones(1, frames, dtype=torch.bool)
    step_mask = torch.ones(1, steps, dtype=torch.bool)
    labels, segments = decode_ordered_steps(log_probs, frame_mask, step_mask)
    best_score, best_labels, log_z = brute_force(log_probs[0], steps)
    assert labels[0].tolist() == best_labels
    assert labelling_score(log_probs, labels).item() == pytest.approx(best_score, abs=1e-5)
    assert ordered_log_partition(log_probs, frame_mask, step_mask).item() == pytest.approx(
        log_z, abs=1e-5
    )
    assert torch.equal(segments, segments_from_labels(labels, step_mask))


def test_padded_frames_and_steps_do_not_change_a_videos_decoding():
    torch.manual_seed(0)
    short = torch.randn(1, 5, 3).log_softmax(-1)  # 5 frames, 2 steps
    padded = torch.cat([short, torch.randn(1, 3, 3)], 1)  # 3 padding frames
    padded = torch.cat([padded, torch.randn(1, 8, 1)], 2)  # 1 padding step
    frame_mask = torch.tensor([[True] * 5 + [False] * 3])
    step_mask = torch.tensor([[True, True, False]])
    labels, segments = decode_ordered_steps(padded, frame_mask, step_mask)
    alone, alone_segments = decode_ordered_steps(
        short, torch.ones(1, 5, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool)
    )
    assert labels[0, :5].tolist() == alone[0].tolist() and labels[0, 5:].eq(-100).all()
    assert segments[0, :2].tolist() == alone_segments[0].tolist()
    assert segments[0, 2].tolist() == [-1, -1]
    log_z = ordered_log_partition(padded, frame_mask, step_mask)
    assert log_z.item() == pytest.approx(brute_force(short[0], 2)[2], abs=1e-5)


def test_decoded_segments_are_ordered_non_overlapping_and_cover_every_step():
    torch.manual_seed(1)
    batch, frames, steps = 6, 40, 5
    # scores that prefer the steps in reverse order: decoding must still keep the given order
    log_probs = torch.randn(batch, frames, steps + 1)
    log_probs[:, :, 1:] += (
        torch.linspace(3, -3, frames)[None, :, None] * torch.arange(5)[None, None]
    )
    frame_mask = torch.arange(frames)[None] < torch.tensor([40, 35, 20, 12, 6, 5])[:, None]
    step_mask = torch.arange(steps)[None] < torch.tensor([5, 5, 4, 3, 2, 5])[:, None]
    _, segments = decode_ordered_steps(log_probs.log_softmax(-1), frame_mask, step_mask)
    for b in range(batch):
        n, length = int(step_mask[b].sum()), int(frame_mask[b].sum())
        real = segments[b, :n]
        assert (real[:, 0] <= real[:, 1]).all() and (real >= 0).all() and (real < length).all()
        assert (real[1:, 0] > real[:-1, 1]).all()  # in order, no overlap
        assert (segments[b, n:] == -1).all()


def test_segments_and_labels_convert_both_ways():
    labels = torch.tensor([[0, 1, 1, 0, 2, -100], [2, 2, 0, 0, 0, 0]])
    step_mask = torch.tensor([[True, True], [True, True]])
    segments = segments_from_labels(labels, step_mask)
    assert segments.tolist() == [[[1, 2], [4, 4]], [[-1, -1], [0, 1]]]
    frame_mask = labels != -100
    assert torch.equal(labels_from_segments(segments, frame_mask, step_mask), labels)


def test_random_baseline_draws_ordered_non_overlapping_segments_reproducibly():
    frame_mask = torch.arange(30)[None] < torch.tensor([30, 9, 3])[:, None]
    step_mask = torch.arange(4)[None] < torch.tensor([4, 2, 3])[:, None]
    first = random_segments(frame_mask, step_mask, torch.Generator().manual_seed(0))
    again = random_segments(frame_mask, step_mask, torch.Generator().manual_seed(0))
    assert torch.equal(first, again)
    for b, (n, length) in enumerate([(4, 30), (2, 9), (3, 3)]):
        real = first[b, :n]
        assert (real[:, 0] <= real[:, 1]).all() and (real >= 0).all() and (real < length).all()
        assert (real[1:, 0] >= real[:-1, 1]).all()
