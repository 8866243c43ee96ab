"""StepAligner's heads: embedded frames (B, T, E) and steps (B, S, E) -> where each step is.

Each head is a strategy (`StepHead`) that owns its forward (`align`), its training loss and how
its outputs become segments, so the module never asks which head it holds.

Interval heads (`IntervalHead`) predict each step's (start, end) as fractions of the video,
trained with 1-D GIoU (Rezatofighi et al. 2019) + L1 on centre and width:
- `SimilarityRegressionHead` (baseline 1): a linear model on the span of frames most similar to
  the step text;
- `LSTMAttentionHead` (baseline 2): a BiLSTM over frames, attention from the step text, and
  regression from the attention weights (ABLR, Yuan et al. 2019).
Frame-classification heads (`FrameClassHead`) score every frame as background (0) or step 1..S,
trained with frame cross-entropy (+ an optional CRF loss over ordered labellings) and decoded by
the lattice the module chooses (`decoding.decode_steps`: ordered or order-tolerant):
- `AttendAlignHead` (main): self-attention over frames, cross-attention to all step texts jointly;
- `ZeroShotHead`: the pretrained similarities with a per-video background level, no training.

A head given as a component (`--model.head.class_path ...`) is called with the encoders' embedding
width first: `head(embed_dim)`; YAML gives the rest of its arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lightning_modules.common import Init, init_weights
from lightning_modules.video.decoding import (
    labelling_score,
    labels_from_segments,
    ordered_log_partition,
)
from lightning_modules.video.losses import frame_cross_entropy, interval_loss

# A decoding of per-frame class log-probabilities: (log_probs, frame_mask, step_mask) -> (labels, segments).
StepDecoder = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


class StepHead(nn.Module):
    """What StepAligner asks of a head. `name` titles figures; `trains` is False for a head with
    nothing to learn (the module then freezes the encoders and skips the optimizer)."""

    name = "head"
    trains = True

    def align(
        self,
        frames: Tensor,
        steps: Tensor,
        frame_mask: Tensor,
        step_mask: Tensor,
        logit_scale: Tensor,
    ) -> dict[str, Tensor]:
        """The head's outputs for a batch; `logit_scale` is the encoders' CLIP temperature."""
        raise NotImplementedError

    def loss(self, outputs: dict[str, Tensor], batch: dict) -> Tensor:
        raise NotImplementedError

    def segments(
        self, outputs: dict[str, Tensor], frame_mask: Tensor, step_mask: Tensor, decode: StepDecoder
    ) -> tuple[Tensor, Tensor]:
        """(segments (B, S, 2) inclusive frames, -1 at padded or left-out steps; labels (B, T))."""
        raise NotImplementedError

    def top_frames(self, outputs: dict[str, Tensor], frame_mask: Tensor) -> Tensor:
        """(B, S) each step's single most likely frame, undecoded (HT-Step's R@1 scores it)."""
        raise NotImplementedError

    def expected_initial_loss(self, batch: dict) -> float | None:
        """The loss of uninformative outputs, for `casebook doctor`; None when there is none."""
        return None


class IntervalHead(StepHead):
    """A head whose `forward(frames, steps, frame_mask, step_mask)` gives (B, S, 2) fractions."""

    def __init__(self, giou_weight: float = 1.0, l1_weight: float = 1.0) -> None:
        super().__init__()
        self.giou_weight, self.l1_weight = giou_weight, l1_weight

    def align(self, frames, steps, frame_mask, step_mask, logit_scale) -> dict[str, Tensor]:
        return {"intervals": self(frames, steps, frame_mask, step_mask)}

    def loss(self, outputs: dict[str, Tensor], batch: dict) -> Tensor:
        frame_mask, segments = batch["frame_mask"], batch["segments"]
        lengths = frame_mask.sum(1, keepdim=True)[..., None].float()  # (B, 1, 1)
        # Inclusive frames [s, e] cover [s, e + 1) of the video's [0, T).
        target = (segments + torch.tensor([0.0, 1.0], device=lengths.device)) / lengths
        shown = batch["step_mask"] & (segments[..., 0] >= 0)  # a skipped step has no interval
        return interval_loss(outputs["intervals"], target, shown, self.giou_weight, self.l1_weight)

    def segments(self, outputs, frame_mask, step_mask, decode) -> tuple[Tensor, Tensor]:
        """Rounded to frames; each step is placed on its own, so no decoding is needed."""
        lengths = frame_mask.sum(1)[:, None].float()  # (B, 1)
        start, end = (outputs["intervals"].detach().float() * lengths[..., None]).unbind(-1)
        last = lengths - 1
        start = torch.minimum(start.round().clamp_min(0), last)
        end = torch.minimum(torch.maximum(end.round() - 1, start), last)
        segments = torch.stack([start, end], -1).long().masked_fill(~step_mask[..., None], -1)
        return segments, labels_from_segments(segments, frame_mask, step_mask)

    def top_frames(self, outputs: dict[str, Tensor], frame_mask: Tensor) -> Tensor:
        lengths = frame_mask.sum(1)[:, None].float()
        centre = outputs["intervals"].detach().float().mean(-1) * lengths
        return torch.minimum(centre.floor().clamp_min(0), lengths - 1).long()


def ordered_truth(labels: Tensor, step_mask: Tensor) -> Tensor:
    """(B,) whether each video's true labelling is ordered: every listed step one block, in the
    listed order (what the CRF over ordered labellings can score)."""
    real = labels.clamp_min(0)
    entered = (real > 0) & (real != F.pad(real, (1, 0))[:, :-1])  # (B, T) a block starts
    rank = entered.cumsum(1)
    in_order = (~entered | (real == rank)).all(1)
    return in_order & (entered.sum(1) == step_mask.sum(1))


class FrameClassHead(StepHead):
    """A head whose outputs are per-frame logits (B, T, S + 1): background, then each step."""

    def __init__(self, label_smoothing: float = 0.0, monotonic_loss_weight: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing, self.monotonic_loss_weight = label_smoothing, monotonic_loss_weight

    def align(self, frames, steps, frame_mask, step_mask, logit_scale) -> dict[str, Tensor]:
        return {"logits": self(frames, steps, frame_mask, step_mask)}

    def loss(self, outputs: dict[str, Tensor], batch: dict) -> Tensor:
        frame_mask, step_mask = batch["frame_mask"], batch["step_mask"]
        logits, labels = outputs["logits"], batch["frame_labels"]
        loss = frame_cross_entropy(logits, labels, step_mask, self.label_smoothing)
        if self.monotonic_loss_weight > 0:
            # CRF over ordered labellings: -log p(true labelling | only ordered ones allowed).
            log_probs = logits.float().log_softmax(-1)
            partition = ordered_log_partition(log_probs, frame_mask, step_mask)
            # Not when a video has fewer frames than steps, nor when its truth is not ordered.
            feasible = torch.isfinite(partition) & ordered_truth(labels, step_mask)
            if feasible.any():
                nll = (partition - labelling_score(log_probs, labels))[feasible]
                per_frame = nll / frame_mask.sum(1)[feasible]
                loss = loss + self.monotonic_loss_weight * per_frame.mean()
        return loss

    def segments(self, outputs, frame_mask, step_mask, decode) -> tuple[Tensor, Tensor]:
        log_probs = outputs["logits"].detach().float().log_softmax(-1)
        labels, segments = decode(log_probs, frame_mask, step_mask)
        return segments, labels

    def top_frames(self, outputs: dict[str, Tensor], frame_mask: Tensor) -> Tensor:
        scores = outputs["logits"].detach().float().log_softmax(-1)[..., 1:]  # (B, T, S)
        return scores.masked_fill(~frame_mask[..., None], float("-inf")).argmax(1)

    def expected_initial_loss(self, batch: dict) -> float | None:
        """ln(steps + 1) per frame for all-zero logits, plus the monotonic term when weighted."""
        if not self.trains:
            return None
        frame_mask, step_mask = batch["frame_mask"], batch["step_mask"]
        logits = frame_mask.new_zeros(
            (*frame_mask.shape, step_mask.shape[1] + 1), dtype=torch.float
        )
        return float(self.loss({"logits": logits}, batch))


def step_order_prior(step_mask: Tensor) -> Tensor:
    """(B, S, 2): [(k - 1) / n, k / n] for the k-th of n steps, where an even split puts it."""
    count = step_mask.sum(1, keepdim=True).clamp_min(1).float()
    k = torch.arange(step_mask.shape[1], device=step_mask.device).float()[None]
    return torch.stack([k / count, (k + 1) / count], -1)


def interval_from_weights(weights: Tensor, frame_mask: Tensor) -> Tensor:
    """(B, S, T) weights over frames (summing to 1) -> (B, S, 2) the interval centred on the
    weighted mean frame position, half as wide as sqrt(3 var + 1 / (4 T^2)), in fractions of the
    video: exactly [start, end) when the weights are uniform over a segment of n frames (whose
    positions have var = (n^2 - 1) / (12 T^2))."""
    lengths = frame_mask.sum(1, keepdim=True).clamp_min(1).float()  # (B, 1)
    frames = torch.arange(frame_mask.shape[1], device=weights.device)[None]
    position = ((frames + 0.5) / lengths)[:, None, :]  # (B, 1, T)
    mean = (weights * position).sum(-1)
    var = (weights * (position - mean[..., None]) ** 2).sum(-1)
    half = (3 * var + 0.25 / lengths**2).sqrt()
    return torch.stack([mean - half, mean + half], -1)


def ordered_interval(start_end: Tensor) -> Tensor:
    """(..., 2) -> the same ends with start <= end, so GIoU sees a proper interval."""
    return torch.stack([start_end.min(-1).values, start_end.max(-1).values], -1)


def cosine_similarity(steps: Tensor, frames: Tensor) -> Tensor:
    """(B, S, E), (B, T, E) -> (B, S, T)."""
    return F.normalize(steps, dim=-1) @ F.normalize(frames, dim=-1).transpose(1, 2)


class SimilarityRegressionHead(IntervalHead):
    """Baseline 1: each step's cosine similarity to every frame, z-scored over the video and
    softmaxed with a learned sharpness, gives a soft span of frames (`interval_from_weights`); a
    linear model maps (that span, the even-split prior of the step) to (start, end). It starts
    as the identity on the span, so training only has to learn how far to trust it. Any
    embedding width (`embed_dim` is not used)."""

    name = "similarity"

    def __init__(
        self,
        embed_dim: int | None = None,
        sharpness: float = 2.0,
        giou_weight: float = 1.0,
        l1_weight: float = 1.0,
    ) -> None:
        super().__init__(giou_weight, l1_weight)
        self.log_sharpness = nn.Parameter(torch.tensor(math.log(sharpness)))
        self.linear = nn.Linear(4, 2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))
            self.linear.bias.zero_()

    def forward(
        self, frames: Tensor, steps: Tensor, frame_mask: Tensor, step_mask: Tensor
    ) -> Tensor:
        similarity = cosine_similarity(steps, frames)  # (B, S, T)
        real = frame_mask[:, None, :].expand_as(similarity)
        count = real.sum(-1, keepdim=True).clamp_min(1)
        mean = similarity.masked_fill(~real, 0).sum(-1, keepdim=True) / count
        var = ((similarity - mean) ** 2).masked_fill(~real, 0).sum(-1, keepdim=True) / count
        z = (similarity - mean) / var.sqrt().clamp_min(1e-4)
        weights = (self.log_sharpness.exp() * z).masked_fill(~real, float("-inf")).softmax(-1)
        span = interval_from_weights(weights, frame_mask)
        return ordered_interval(self.linear(torch.cat([span, step_order_prior(step_mask)], -1)))


class LSTMAttentionHead(IntervalHead):
    """Baseline 2 (after ABLR, Yuan et al. 2019): a BiLSTM over frames; the step text attends
    over its outputs; the attention weights give a soft span (`interval_from_weights`), and an MLP on
    (attended context, text, span, even-split prior) corrects it into (start, end)."""

    name = "lstm"

    def __init__(
        self,
        embed_dim: int,
        hidden: int = 128,
        dropout: float = 0.1,
        giou_weight: float = 1.0,
        l1_weight: float = 1.0,
    ) -> None:
        super().__init__(giou_weight, l1_weight)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.query = nn.Linear(embed_dim, 2 * hidden)
        self.correct = nn.Sequential(
            nn.Linear(4 * hidden + 4, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 2),
        )
        nn.init.zeros_(self.correct[-1].weight)  # start from the attention span itself
        nn.init.zeros_(self.correct[-1].bias)

    def forward(
        self, frames: Tensor, steps: Tensor, frame_mask: Tensor, step_mask: Tensor
    ) -> Tensor:
        lengths = frame_mask.sum(1).clamp_min(1).cpu()
        packed = pack_padded_sequence(frames, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=frames.shape[1])
        query = self.query(steps)  # (B, S, 2h)
        scores = query @ out.transpose(1, 2) / math.sqrt(out.shape[-1])  # (B, S, T)
        attention = scores.masked_fill(~frame_mask[:, None, :], float("-inf")).softmax(-1)
        context = attention @ out  # (B, S, 2h)
        span = interval_from_weights(attention, frame_mask)
        prior = step_order_prior(step_mask)
        correction = self.correct(torch.cat([context, query, span, prior], -1))
        return ordered_interval(span + correction)


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> Tensor:
    """(length, dim) sine/cosine position codes (Vaswani et al. 2017)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    codes = torch.zeros(length, dim, device=device)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return codes


PositionalEncoding = Literal["sinusoidal", "learned", "none"]


class AttendAlignHead(FrameClassHead):
    """Main head: frames (with absolute and relative positions) self-attend and cross-attend to
    all step texts of the video at once (each text plus an embedding of its place in the list),
    then each frame scores background (a linear read-out) and every step (dot product with that
    step's key). Returns logits (B, T, S + 1), padded steps at -inf.

    The absolute frame position is `positional_encoding`: sinusoidal (fixed, any length),
    learned (an embedding of up to `max_frames` positions, later frames share the last) or none;
    the relative position (frame index / video length) is always added. `init` re-initializes
    its layers (`lightning_modules.common.init_weights`)."""

    name = "attend_align"

    def __init__(
        self,
        embed_dim: int,
        hidden: int = 128,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        max_steps: int = 64,
        positional_encoding: PositionalEncoding = "sinusoidal",
        max_frames: int = 1024,
        init: Init = "default",
        label_smoothing: float = 0.0,
        monotonic_loss_weight: float = 0.0,
    ) -> None:
        super().__init__(label_smoothing, monotonic_loss_weight)
        if positional_encoding not in ("sinusoidal", "learned", "none"):
            raise ValueError(
                f"positional_encoding must be sinusoidal, learned or none, not {positional_encoding!r}"
            )
        self.hidden, self.max_steps = hidden, max_steps
        self.positional_encoding, self.max_frames = positional_encoding, max_frames
        self.frame_position = (
            nn.Embedding(max_frames, hidden) if positional_encoding == "learned" else None
        )
        self.frame_in = nn.Linear(embed_dim, hidden)
        self.relative_position = nn.Linear(1, hidden)
        self.step_in = nn.Linear(embed_dim, hidden)
        self.step_order = nn.Embedding(max_steps, hidden)
        layer = nn.TransformerDecoderLayer(
            hidden, heads, 4 * hidden, dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(hidden))
        self.step_key = nn.Linear(hidden, hidden)
        self.background = nn.Linear(hidden, 1)
        init_weights(self, init)

    def absolute_positions(self, num_frames: int, device: torch.device) -> Tensor:
        """(num_frames, hidden) codes of the frame indices; zeros for `none`."""
        if self.positional_encoding == "sinusoidal":
            return sinusoidal_positions(num_frames, self.hidden, device)
        if self.positional_encoding == "learned":
            index = torch.arange(num_frames, device=device).clamp(max=self.max_frames - 1)
            return self.frame_position(index)
        return torch.zeros(num_frames, self.hidden, device=device)

    def forward(
        self, frames: Tensor, steps: Tensor, frame_mask: Tensor, step_mask: Tensor
    ) -> Tensor:
        batch, num_frames, _ = frames.shape
        lengths = frame_mask.sum(1, keepdim=True).clamp_min(1).float()
        relative = (torch.arange(num_frames, device=frames.device)[None] / lengths)[..., None]
        x = (
            self.frame_in(frames)
            + self.absolute_positions(num_frames, frames.device)
            + self.relative_position(relative)
        )
        order = torch.arange(steps.shape[1], device=steps.device).clamp(max=self.max_steps - 1)
        memory = self.step_in(steps) + self.step_order(order)[None]
        x = self.decoder(
            x, memory, tgt_key_padding_mask=~frame_mask, memory_key_padding_mask=~step_mask
        )
        step_logits = x @ self.step_key(memory).transpose(1, 2) / math.sqrt(self.hidden)
        step_logits = step_logits.masked_fill(~step_mask[:, None, :], float("-inf"))
        return torch.cat([self.background(x), step_logits], -1)


def zero_shot_logits(
    frames: Tensor,
    steps: Tensor,
    frame_mask: Tensor,
    step_mask: Tensor,
    logit_scale: Tensor,
    background_quantile: float = 0.75,
) -> Tensor:
    """(B, T, S + 1) logits from pretrained embeddings alone: a step's logit is its scaled
    cosine similarity to the frame; background's is the `background_quantile` of the video's
    real frame-step similarities, so a frame is a step only when it stands out."""
    similarity = (logit_scale * cosine_similarity(steps, frames)).transpose(1, 2)  # (B, T, S)
    valid = frame_mask[:, :, None] & step_mask[:, None, :]
    background = torch.stack(
        [
            s[v].quantile(background_quantile) if v.any() else s.new_zeros(())
            for s, v in zip(similarity, valid)
        ]
    )
    similarity = similarity.masked_fill(~step_mask[:, None, :], float("-inf"))
    return torch.cat([background[:, None, None].expand(-1, frames.shape[1], 1), similarity], -1)


class ZeroShotHead(FrameClassHead):
    """The pretrained similarities as frame logits (`zero_shot_logits`): nothing to train, so the
    module keeps its encoders frozen. Any embedding width (`embed_dim` is not used)."""

    name = "zero_shot"
    trains = False

    def __init__(self, embed_dim: int | None = None, background_quantile: float = 0.75) -> None:
        super().__init__()
        self.background_quantile = background_quantile

    def align(self, frames, steps, frame_mask, step_mask, logit_scale) -> dict[str, Tensor]:
        logits = zero_shot_logits(
            frames, steps, frame_mask, step_mask, logit_scale, self.background_quantile
        )
        return {"logits": logits}


# A head component: called with the encoders' embedding width (YAML `class_path` + `init_args`).
HeadFactory = Callable[[int], StepHead]
