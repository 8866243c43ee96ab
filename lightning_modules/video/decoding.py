"""Ordered step decoding: per-frame class scores -> steps in their given order, without overlap.

A video's labelling must read ``0* 1+ 0* 2+ 0* ... n+ 0*``: every step one non-empty block of
frames, in the order of the step list, background (0) anywhere between. That is a left-to-right
HMM with 2n + 1 states (B0, S1, B1, S2, ..., Sn, Bn), as in the ordered alignment of CrossTask
(Zhukov et al. 2019) and Drop-DTW (Dvornik et al. 2021) with background as the drop state:

- `decode_ordered_steps`: Viterbi, the best such labelling (max-sum);
- `ordered_log_partition`: the forward algorithm, log Σ exp(score) over all such labellings,
  for a CRF-style monotonic training loss (log Z - gold score).

Real videos skip listed steps, repeat them and do them out of the listed order (CrossTask,
HT-Step). `decode_order_tolerant` keeps the same 2n + 1 states, read as "the step last entered"
(S_k in step k, B_k background after it), but lets any step follow any other at a price, after
Drop-DTW's drop costs (Dvornik et al. 2021): entering a step at or before the last one entered (a
step out of order, or a repeat) costs `order_penalty`, passing listed steps over costs
`skip_penalty` each (also at the end of the video, for the steps never reached). With both
penalties infinite it is exactly `decode_ordered_steps`.

Hand-written: torchaudio's forced_align needs every frame assigned to a token (CTC blanks aside)
and no library here offers this lattice batched over padded videos and step lists.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from datamodules.video.datasets import IGNORE_INDEX

# A finite "impossible": the forward algorithm's logsumexp over all-(-inf) inputs has NaN gradients.
IMPOSSIBLE = -1e30


def _state_emissions(log_probs: Tensor, step_mask: Tensor) -> Tensor:
    """(B, T, S + 1) class scores -> (B, T, 2S + 1) state scores; padded steps get -inf."""
    background = log_probs[..., :1]
    steps = log_probs[..., 1:].masked_fill(~step_mask[:, None, :], IMPOSSIBLE)  # (B, T, S)
    batch, frames, num_steps = steps.shape
    states = torch.empty(
        batch, frames, 2 * num_steps + 1, dtype=log_probs.dtype, device=log_probs.device
    )
    states[..., 0::2] = background.expand(-1, -1, num_steps + 1)
    states[..., 1::2] = steps
    return states


def _ordered_lattice(
    log_probs: Tensor, frame_mask: Tensor, step_mask: Tensor, viterbi: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(scores of the two end states Sn, Bn (B, 2), their state ids (B, 2),
    back-pointers (B, T, 2S + 1): 0 stay, 1 from the previous state, 2 from the step before;
    None for the forward algorithm)."""
    emissions = _state_emissions(log_probs, step_mask)
    batch, frames, num_states = emissions.shape
    device = log_probs.device
    state = torch.arange(num_states, device=device)
    # Entering step k directly from step k - 1 (no background between) is a jump of 2.
    can_jump = (state % 2 == 1) & (state >= 3)
    start = torch.full((num_states,), IMPOSSIBLE, dtype=log_probs.dtype, device=device)
    start[:2] = 0.0  # B0 or S1
    score = start + emissions[:, 0]
    pointers = (
        torch.zeros(batch, frames, num_states, dtype=torch.long, device=device) if viterbi else None
    )
    pad = torch.full((batch, 1), IMPOSSIBLE, dtype=log_probs.dtype, device=device)
    for t in range(1, frames):
        from_prev = torch.cat([pad, score[:, :-1]], 1)  # state j - 1
        from_jump = torch.cat([pad, pad, score[:, :-2]], 1).masked_fill(~can_jump, IMPOSSIBLE)
        candidates = torch.stack([score, from_prev, from_jump], -1)  # (B, states, 3)
        if viterbi:
            best, choice = candidates.max(-1)
            pointers[:, t] = torch.where(frame_mask[:, t, None], choice, 0)
        else:
            best = candidates.logsumexp(-1)
        new = best + emissions[:, t]
        score = torch.where(frame_mask[:, t, None], new, score)  # padding frames carry over
    num_steps = step_mask.sum(1)
    end = torch.stack([2 * num_steps - 1, 2 * num_steps], 1).clamp_min(0)  # Sn or Bn
    return score.gather(1, end), end, pointers


def ordered_log_partition(log_probs: Tensor, frame_mask: Tensor, step_mask: Tensor) -> Tensor:
    """log Σ over ordered labellings of Σ_t log_probs[t, label_t]; (B,), -inf if T < steps."""
    final, _, _ = _ordered_lattice(log_probs.float(), frame_mask, step_mask, viterbi=False)
    total = final.logsumexp(1)
    return total.masked_fill(total < IMPOSSIBLE / 2, float("-inf"))


def labelling_score(log_probs: Tensor, labels: Tensor) -> Tensor:
    """Σ_t log_probs[t, labels_t] over non-padding frames; (B,)."""
    valid = labels != IGNORE_INDEX
    picked = log_probs.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return picked.masked_fill(~valid, 0.0).sum(1)


@torch.no_grad()
def decode_ordered_steps(
    log_probs: Tensor, frame_mask: Tensor, step_mask: Tensor
) -> tuple[Tensor, Tensor]:
    """Viterbi: the best ordered labelling of each video.

    log_probs: (B, T, S + 1) class scores (0 = background); frame_mask (B, T); step_mask (B, S).
    Returns (labels (B, T) long, IGNORE_INDEX at padding; segments (B, S, 2) long, inclusive
    start and end frame of each step, -1 at padded steps). A video with fewer frames than steps
    has no valid labelling; its k-th step then gets frame min(k, T - 1).
    """
    log_probs = log_probs.float()
    final, end_states, pointers = _ordered_lattice(log_probs, frame_mask, step_mask, viterbi=True)
    batch, frames, _ = pointers.shape
    best, which = final.max(1)
    state = end_states.gather(1, which[:, None]).squeeze(1)
    states = torch.zeros(batch, frames, dtype=torch.long, device=log_probs.device)
    rows = torch.arange(batch, device=log_probs.device)
    for t in range(frames - 1, -1, -1):
        states[:, t] = state
        if t > 0:
            state = state - pointers[rows, t, state]
    labels = torch.where(states % 2 == 1, (states + 1) // 2, 0)
    labels = labels.masked_fill(~frame_mask, IGNORE_INDEX)
    lengths, num_steps = frame_mask.sum(1), step_mask.sum(1)
    feasible = (best > IMPOSSIBLE / 2) & (lengths >= num_steps)
    for b in torch.nonzero(~feasible).flatten().tolist():
        labels[b] = _fallback_labels(int(lengths[b]), int(num_steps[b]), frames)
    return labels, segments_from_labels(labels, step_mask)


def _fallback_labels(length: int, num_steps: int, frames: int) -> Tensor:
    labels = torch.full((frames,), IGNORE_INDEX, dtype=torch.long)
    labels[:length] = 0
    for k in range(min(num_steps, length)):
        labels[k] = k + 1
    return labels


def segments_from_labels(labels: Tensor, step_mask: Tensor) -> Tensor:
    """(B, T) labels -> (B, S, 2) first and last frame of each step (-1 where a step is absent)."""
    frames = labels.shape[1]
    steps = torch.arange(1, step_mask.shape[1] + 1, device=labels.device)
    hit = labels[:, None, :] == steps[None, :, None]  # (B, S, T)
    index = torch.arange(frames, device=labels.device)
    first = torch.where(hit, index, frames).min(-1).values
    last = torch.where(hit, index, -1).max(-1).values
    present = hit.any(-1)
    return torch.stack([first.where(present, -1), last.where(present, -1)], -1)


def labels_from_segments(segments: Tensor, frame_mask: Tensor, step_mask: Tensor) -> Tensor:
    """(B, S, 2) inclusive segments -> (B, T) labels; a later step wins where segments overlap."""
    index = torch.arange(frame_mask.shape[1], device=segments.device)
    inside = (index >= segments[..., :1]) & (index <= segments[..., 1:]) & step_mask[..., None]
    steps = torch.arange(1, step_mask.shape[1] + 1, device=segments.device)
    labels = (inside * steps[None, :, None]).max(1).values  # (B, T)
    return labels.masked_fill(~frame_mask, IGNORE_INDEX)


def random_segments(
    frame_mask: Tensor, step_mask: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """The chance baseline: per video, a uniformly random ordered, non-overlapping segmentation
    (2n distinct sorted boundaries among the T + 1 frame edges). (B, S, 2) long, -1 at padding."""
    batch, num_steps = step_mask.shape
    segments = torch.full((batch, num_steps, 2), -1, dtype=torch.long)
    for b, (length, n) in enumerate(zip(frame_mask.sum(1).tolist(), step_mask.sum(1).tolist())):
        if n == 0:
            continue
        if 2 * n > length + 1:
            edges = torch.linspace(0, length, 2 * n).round().long()
        else:
            edges = torch.randperm(length + 1, generator=generator)[: 2 * n].sort().values
        starts, stops = edges[0::2], edges[1::2]
        segments[b, :n, 0] = starts.clamp(max=length - 1)
        segments[b, :n, 1] = torch.maximum(stops - 1, starts).clamp(max=length - 1)
    return segments.to(frame_mask.device)


Decoding = Literal["ordered", "order_tolerant"]


@dataclass(frozen=True)
class OrderTolerance:
    """Prices of the order-tolerant decoding, in log-probability units (nats) of the frame scores."""

    order_penalty: float = 4.0  # entering a step at or before the last one entered
    skip_penalty: float = 2.0  # each listed step passed over (entered later or never)


def tolerant_transitions(num_steps: int, tolerance: OrderTolerance) -> tuple[Tensor, Tensor]:
    """(transition scores (2S + 1, 2S + 1), from-state x to-state, IMPOSSIBLE where barred;
    the step last entered of each state (2S + 1,): 0 for B0, k for S_k and B_k)."""
    num_states = 2 * num_steps + 1
    state = torch.arange(num_states)
    last = (state + 1) // 2
    ahead = last[None, :] - last[:, None]  # j - i for entering S_j from a state after step i
    skipped = (ahead - 1).clamp_min(0).double() * tolerance.skip_penalty
    into_step = torch.where(
        ahead == 1, 0.0, torch.where(ahead > 1, skipped, tolerance.order_penalty)
    )
    cost = torch.where((state % 2 == 1)[None, :], into_step, -IMPOSSIBLE)
    cost = cost.clamp(max=-IMPOSSIBLE)  # an infinite price is the finite "impossible"
    cost[state, state] = 0.0  # stay
    steps = state[1::2]
    cost[steps, steps + 1] = 0.0  # S_k -> B_k
    return (-cost).float(), last


@torch.no_grad()
def decode_order_tolerant(
    log_probs: Tensor,
    frame_mask: Tensor,
    step_mask: Tensor,
    tolerance: OrderTolerance = OrderTolerance(),
) -> tuple[Tensor, Tensor]:
    """Viterbi over labellings where steps may be skipped, repeated or out of the listed order,
    each departure priced by `tolerance` (module docstring). Same shapes as
    `decode_ordered_steps`; a step never entered gets segment (-1, -1), a step entered more than
    once its longest run. O(T (2S + 1)^2) per video."""
    log_probs = log_probs.float()
    emissions = _state_emissions(log_probs, step_mask)
    batch, frames, num_states = emissions.shape
    device = log_probs.device
    transitions, last = tolerant_transitions(step_mask.shape[1], tolerance)
    transitions, last = transitions.to(device), last.to(device)
    is_step = torch.arange(num_states, device=device) % 2 == 1
    skip = min(tolerance.skip_penalty, -IMPOSSIBLE)
    # Start in B0, or in S_j having skipped the j - 1 steps before it.
    start = torch.where(is_step, -(last - 1).clamp_min(0).float() * skip, IMPOSSIBLE)
    start[0] = 0.0
    score = start.clamp_min(IMPOSSIBLE) + emissions[:, 0]
    pointers = torch.zeros(batch, frames, num_states, dtype=torch.long, device=device)
    for t in range(1, frames):
        best, choice = (score[:, :, None] + transitions[None]).max(1)  # over from-states
        real = frame_mask[:, t, None]
        score = torch.where(real, best + emissions[:, t], score)
        pointers[:, t] = torch.where(real, choice, torch.arange(num_states, device=device))
    never_reached = (step_mask.sum(1, keepdim=True) - last[None]).clamp_min(0).float()
    best, state = (score - (never_reached * skip).clamp(max=-IMPOSSIBLE)).max(1)
    states = torch.zeros(batch, frames, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)
    for t in range(frames - 1, -1, -1):
        states[:, t] = state
        if t > 0:
            state = pointers[rows, t, state]
    labels = torch.where(states % 2 == 1, (states + 1) // 2, 0).masked_fill(
        ~frame_mask, IGNORE_INDEX
    )
    lengths, num_steps = frame_mask.sum(1), step_mask.sum(1)
    for b in torch.nonzero(best <= IMPOSSIBLE / 2).flatten().tolist():  # infinite prices only
        labels[b] = _fallback_labels(int(lengths[b]), int(num_steps[b]), frames)
    return labels, longest_runs(labels, step_mask)


def longest_runs(labels: Tensor, step_mask: Tensor) -> Tensor:
    """(B, T) labels -> (B, S, 2) first and last frame of each step's longest run of frames
    (the first of equally long ones), -1 where a step is absent."""
    segments = torch.full((*step_mask.shape, 2), -1, dtype=torch.long)
    for b, row in enumerate(labels.tolist()):
        t = 0
        for label, run in itertools.groupby(row):
            length = len(list(run))
            k = label - 1
            if 0 <= k < step_mask.shape[1]:
                start, end = segments[b, k].tolist()
                if start < 0 or length > end - start + 1:
                    segments[b, k] = torch.tensor([t, t + length - 1])
            t += length
    return segments.to(labels.device)


def decode_steps(
    log_probs: Tensor,
    frame_mask: Tensor,
    step_mask: Tensor,
    decoding: Decoding = "ordered",
    tolerance: OrderTolerance = OrderTolerance(),
) -> tuple[Tensor, Tensor]:
    """(labels (B, T), segments (B, S, 2)) by the chosen decoding of per-frame class scores."""
    if decoding == "ordered":
        return decode_ordered_steps(log_probs, frame_mask, step_mask)
    return decode_order_tolerant(log_probs, frame_mask, step_mask, tolerance)
