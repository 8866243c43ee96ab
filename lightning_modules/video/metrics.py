"""torchmetrics of the video task (one object per stage; states sum or concatenate across ranks).

- `StepAlignmentMetrics`: mean IoU of each step's predicted vs true segment, recall at IoU
  thresholds, CrossTask's step recall (the decoded segment's middle frame falls inside a true
  segment of the step; Zhukov et al. 2019), HT-Step's R@1 (the step's single highest-scoring
  frame, before any decoding, falls inside a true segment of it; Afouras et al. 2023), frame
  accuracy with background included. Steps the video does not show (true segment -1) count in
  none of the step metrics; a repeated step's later occurrences count as its true segments
  through the frame labels.
- `TextToFrameRecall`: zero-shot text -> frame retrieval, hit rate at k.

Custom because torchmetrics has no 1-D segment IoU, and its RetrievalRecall counts the share of
relevant items retrieved, while a query here has many equally right frames (the same step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from datamodules.video.datasets import IGNORE_INDEX

IOU_THRESHOLDS = (0.3, 0.5, 0.7)


def segment_iou(pred: Tensor, target: Tensor) -> Tensor:
    """IoU of inclusive frame segments (..., 2): a segment [s, e] covers e - s + 1 frames."""
    intersection = (
        torch.minimum(pred[..., 1], target[..., 1])
        - torch.maximum(pred[..., 0], target[..., 0])
        + 1
    ).clamp_min(0)
    union = (pred[..., 1] - pred[..., 0] + 1) + (target[..., 1] - target[..., 0] + 1) - intersection
    return intersection / union.clamp_min(1)


class StepAlignmentMetrics(Metric):
    """compute() -> {"miou", "recall_iou0.3", "recall_iou0.5", "recall_iou0.7", "step_recall",
    "recall_at_1" (when top frames are given), "frame_acc"}; a step that was not predicted
    (segment -1) counts as IoU 0 and a miss."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, thresholds: tuple[float, ...] = IOU_THRESHOLDS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.thresholds = thresholds
        self.add_state("iou_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("hits", torch.zeros(len(thresholds), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("step_hits", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("top_hits", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("top_steps", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("steps", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("frames_correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("frames", torch.tensor(0), dist_reduce_fx="sum")

    def update(
        self,
        pred_segments: Tensor,  # (B, S, 2) inclusive frames, -1 = not predicted
        true_segments: Tensor,  # (B, S, 2)
        step_mask: Tensor,  # (B, S)
        pred_labels: Tensor,  # (B, T) 0 background, k step k
        true_labels: Tensor,  # (B, T), IGNORE_INDEX at padding
        top_frames: Tensor | None = None,  # (B, S) each step's highest-scoring frame
    ) -> None:
        pred_segments, true_segments = pred_segments.float(), true_segments.float()
        shown = step_mask & (true_segments[..., 0] >= 0)  # (B, S) steps the video shows
        predicted = pred_segments[..., 0] >= 0
        iou = torch.where(predicted, segment_iou(pred_segments, true_segments), 0.0)[shown]
        self.iou_sum += iou.sum().double()
        self.hits += (iou[:, None] >= torch.tensor(self.thresholds, device=iou.device)).sum(0)
        middle = torch.floor(pred_segments.sum(-1) / 2)
        inside = predicted & (
            (middle >= true_segments[..., 0]) & (middle <= true_segments[..., 1])
            | step_at(true_labels, middle.long())
        )
        self.step_hits += inside[shown].sum()
        self.steps += shown.sum()
        if top_frames is not None:
            self.top_hits += step_at(true_labels, top_frames)[shown].sum()
            self.top_steps += shown.sum()
        valid = true_labels != IGNORE_INDEX
        self.frames_correct += (pred_labels == true_labels)[valid].sum()
        self.frames += valid.sum()

    def compute(self) -> dict[str, Tensor]:
        steps = self.steps.clamp_min(1).float()
        values = {"miou": (self.iou_sum / steps).float()}
        for threshold, hits in zip(self.thresholds, self.hits):
            values[f"recall_iou{threshold:g}"] = hits.float() / steps
        values["step_recall"] = self.step_hits.float() / steps
        if self.top_steps > 0:
            values["recall_at_1"] = self.top_hits.float() / self.top_steps.float()
        values["frame_acc"] = self.frames_correct.float() / self.frames.clamp_min(1).float()
        return values


def step_at(labels: Tensor, frames: Tensor) -> Tensor:
    """(B, S) whether frame `frames[b, k]` (any value; outside the video is a miss) is labelled
    step k + 1 in `labels` (B, T): a true segment of the step, first or repeated."""
    inside = (frames >= 0) & (frames < labels.shape[1])
    picked = labels.gather(1, frames.clamp(0, labels.shape[1] - 1))
    steps = torch.arange(1, frames.shape[1] + 1, device=frames.device)
    return inside & (picked == steps)


class TextToFrameRecall(Metric):
    """Each text ranks every frame of the epoch by cosine similarity; a hit at k when one of its
    top k frames shows the same step (equal text id). compute() -> {"recall_at_<k>", and
    "heldout_recall_at_<k>" over the held-out steps' texts when there are any}."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, top_k: tuple[int, ...] = (1, 5), **kwargs) -> None:
        super().__init__(**kwargs)
        self.top_k = top_k
        for name in ("frames", "texts", "text_ids", "heldout"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, frames: Tensor, texts: Tensor, text_ids: Tensor, heldout: Tensor) -> None:
        self.frames.append(F.normalize(frames.float(), dim=-1))
        self.texts.append(F.normalize(texts.float(), dim=-1))
        self.text_ids.append(text_ids)
        self.heldout.append(heldout.bool())

    def compute(self) -> dict[str, Tensor]:
        frames, texts = dim_zero_cat(self.frames), dim_zero_cat(self.texts)
        text_ids, heldout = dim_zero_cat(self.text_ids), dim_zero_cat(self.heldout)
        similarity = texts @ frames.T  # (queries, frames)
        ranked = similarity.topk(min(max(self.top_k), len(frames)), dim=1).indices
        relevant = text_ids[ranked] == text_ids[:, None]  # (queries, k)
        values = {}
        for k in self.top_k:
            hit = relevant[:, :k].any(1).float()
            values[f"recall_at_{k}"] = hit.mean()
            if heldout.any():
                values[f"heldout_recall_at_{k}"] = hit[heldout].mean()
        return values
