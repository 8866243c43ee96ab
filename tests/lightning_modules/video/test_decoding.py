"""Ordered step decoding: Viterbi and the forward algorithm equal brute force over labellings."""

import itertools

import pytest
import torch

from lightning_modules.video.decoding import (
    OrderTolerance,
    decode_order_tolerant,
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


# ---------------------------------------------------------------- order-tolerant decoding


def tolerant_score(log_probs, labels, steps: int, tolerance: OrderTolerance) -> float:
    """A labelling's frame scores minus its prices, walked as the docstring states them."""
    score, last = sum(log_probs[t, k].item() for t, k in enumerate(labels)), 0
    for k, _ in itertools.groupby(labels):
        if k == 0:
            continue
        if k > last:
            score -= tolerance.skip_penalty * (k - last - 1)
        else:
            score -= tolerance.order_penalty
        last = k
    return score - tolerance.skip_penalty * (steps - last)


@pytest.mark.parametrize("frames,steps", [(4, 2), (5, 3), (6, 2), (2, 3)])
def test_order_tolerant_viterbi_equals_brute_force_over_every_labelling(frames, steps):
    torch.manual_seed(frames * 10 + steps)
    tolerance = OrderTolerance(order_penalty=0.7, skip_penalty=0.4)
    log_probs = torch.randn(1, frames, steps + 1).log_softmax(-1)
    masks = torch.ones(1, frames, dtype=torch.bool), torch.ones(1, steps, dtype=torch.bool)
    labels, segments = decode_order_tolerant(log_probs, *masks, tolerance)
    best = max(
        tolerant_score(log_probs[0], labelling, steps, tolerance)
        for labelling in itertools.product(range(steps + 1), repeat=frames)
    )
    got = tolerant_score(log_probs[0], labels[0].tolist(), steps, tolerance)
    assert got == pytest.approx(best, abs=1e-5)


def test_order_tolerant_with_infinite_prices_is_the_ordered_viterbi_on_padded_batches():
    torch.manual_seed(3)
    log_probs = torch.randn(4, 9, 5).log_softmax(-1)
    frame_mask = torch.arange(9)[None] < torch.tensor([[9], [7], [3], [6]])
    step_mask = torch.arange(4)[None] < torch.tensor(
        [[4], [2], [4], [3]]
    )  # row 2: 3 frames < 4 steps
    strict = decode_ordered_steps(log_probs, frame_mask, step_mask)
    infinite = OrderTolerance(order_penalty=float("inf"), skip_penalty=float("inf"))
    tolerant = decode_order_tolerant(log_probs, frame_mask, step_mask, infinite)
    assert torch.equal(tolerant[0], strict[0]) and torch.equal(tolerant[1], strict[1])


def evidence(order: list[int], steps: int, frames_per_block: int = 3, gap: int = 2) -> torch.Tensor:
    """(1, T, steps + 1) log-probabilities of a video showing the steps `order` (1-based)
    one after the other with background between, each frame 90% sure of its class."""
    blocks = [0] * gap
    for k in order:
        blocks += [k] * frames_per_block + [0] * gap
    probs = torch.full((len(blocks), steps + 1), 0.1 / steps)
    probs[torch.arange(len(blocks)), torch.tensor(blocks)] = 0.9
    return probs.log()[None]


def masks(log_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, frames, classes = log_probs.shape
    return torch.ones(1, frames, dtype=torch.bool), torch.ones(1, classes - 1, dtype=torch.bool)


def test_order_tolerant_equals_ordered_on_a_video_that_keeps_the_listed_order():
    log_probs = evidence([1, 2, 3, 4], steps=4)
    strict = decode_ordered_steps(log_probs, *masks(log_probs))
    tolerant = decode_order_tolerant(log_probs, *masks(log_probs))
    assert torch.equal(tolerant[0], strict[0]) and torch.equal(tolerant[1], strict[1])
    assert strict[1][0].tolist() == [[2, 4], [7, 9], [12, 14], [17, 19]]


def test_order_tolerant_finds_steps_done_out_of_the_listed_order():
    log_probs = evidence([2, 1, 3], steps=3)  # steps 1 and 2 swapped
    _, segments = decode_order_tolerant(log_probs, *masks(log_probs))
    assert segments[0].tolist() == [[7, 9], [2, 4], [12, 14]]
    _, strict = decode_ordered_steps(log_probs, *masks(log_probs))
    assert strict[0].tolist() != segments[0].tolist()  # the ordered decoding cannot


def test_order_tolerant_leaves_a_skipped_step_out_instead_of_forcing_it_onto_frames():
    log_probs = evidence([1, 3], steps=3)  # step 2 never shown
    labels, segments = decode_order_tolerant(log_probs, *masks(log_probs))
    assert segments[0].tolist() == [[2, 4], [-1, -1], [7, 9]]
    assert 2 not in labels[0].tolist()
    _, strict = decode_ordered_steps(log_probs, *masks(log_probs))
    assert strict[0, 1, 0] >= 0  # the ordered decoding puts step 2 somewhere


def test_a_repeated_step_keeps_its_longest_run_as_its_segment():
    # frames 2-3 step 1, 6-7 step 2, 11-14 step 1 again
    log_probs = evidence([1, 2], steps=2, frames_per_block=2)
    log_probs = torch.cat([log_probs, evidence([1], steps=2, frames_per_block=4)[:, 1:]], 1)
    labels, segments = decode_order_tolerant(log_probs, *masks(log_probs), OrderTolerance(0.5, 2.0))
    assert [k for k, _ in itertools.groupby(labels[0].tolist()) if k] == [1, 2, 1]
    assert segments[0].tolist() == [[11, 14], [6, 7]]
