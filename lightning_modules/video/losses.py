"""Losses of the video task: CLIP's symmetric InfoNCE across ranks, 1-D GIoU for step intervals,
and frame cross-entropy with label smoothing over each video's own steps.

Hand-written because no installed library has them in this form: open_clip's ClipLoss is not a
dependency (and knows no duplicate texts), torchvision's generalized_box_iou_loss is 2-D only.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import Tensor

from datamodules.video.datasets import IGNORE_INDEX


def gather_with_grad(tensor: Tensor) -> tuple[Tensor, int]:
    """(every rank's `tensor` concatenated along dim 0, offset of this rank's rows in it).

    Gradients flow back through the gather (its backward sums each rank's gradient of its own
    loss), which open_clip's local loss needs. A single process returns `tensor` itself.
    Every rank must pass the same shape (DistributedSampler pads the splits to equal size).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor, 0
    parts = dist_fn.all_gather(tensor)
    return torch.cat(parts, 0), dist.get_rank() * tensor.shape[0]


def clip_loss(
    frame_embeddings: Tensor, text_embeddings: Tensor, text_ids: Tensor, logit_scale: Tensor
) -> Tensor:
    """Symmetric InfoNCE (CLIP, Radford et al. 2021) of this rank's pairs against every rank's.

    frame_embeddings, text_embeddings: (N, E) L2-normalized, row i a positive pair; text_ids:
    (N,), equal ids mean the same step text. Local-loss scheme as in open_clip: this rank's rows
    against all gathered columns, so the mean over ranks equals the loss of the concatenated batch.
    A pair whose text id equals the row's (a duplicate positive) is masked out, not a negative.
    """
    all_frames, offset = gather_with_grad(frame_embeddings)
    all_texts, _ = gather_with_grad(text_embeddings)
    all_ids, _ = gather_with_grad(text_ids)
    rows = torch.arange(len(text_ids), device=text_ids.device)
    targets = rows + offset
    duplicate = text_ids[:, None] == all_ids[None, :]  # (local, global)
    duplicate[rows, targets] = False
    logits_per_frame = (logit_scale * frame_embeddings @ all_texts.T).masked_fill(
        duplicate, float("-inf")
    )
    logits_per_text = (logit_scale * text_embeddings @ all_frames.T).masked_fill(
        duplicate, float("-inf")
    )
    return (
        F.cross_entropy(logits_per_frame, targets) + F.cross_entropy(logits_per_text, targets)
    ) / 2


def giou_1d(pred: Tensor, target: Tensor) -> Tensor:
    """Generalized IoU of intervals (..., 2) = (start, end), end >= start.

    GIoU, Rezatofighi et al. 2019, 1-D form: IoU - (hull - union) / hull. Unlike IoU it still
    has a gradient when the intervals do not overlap, pulling the prediction towards the target.
    """
    p_start, p_end = pred.unbind(-1)
    t_start, t_end = target.unbind(-1)
    intersection = (torch.minimum(p_end, t_end) - torch.maximum(p_start, t_start)).clamp_min(0)
    union = (p_end - p_start) + (t_end - t_start) - intersection
    hull = torch.maximum(p_end, t_end) - torch.minimum(p_start, t_start)
    eps = torch.finfo(pred.dtype).eps
    return intersection / union.clamp_min(eps) - (hull - union) / hull.clamp_min(eps)


def interval_loss(
    pred: Tensor, target: Tensor, mask: Tensor, giou_weight: float = 1.0, l1_weight: float = 1.0
) -> Tensor:
    """Mean over `mask` of giou_weight·(1 - GIoU) + l1_weight·(|Δcentre| + |Δwidth|).

    pred, target: (..., 2) intervals in fractions of the video; mask: (...) bool.
    """
    giou = giou_1d(pred, target)
    centre = (pred.sum(-1) - target.sum(-1)).abs() / 2
    width = ((pred[..., 1] - pred[..., 0]) - (target[..., 1] - target[..., 0])).abs()
    per_step = giou_weight * (1 - giou) + l1_weight * (centre + width)
    return per_step[mask].mean()


def frame_cross_entropy(
    logits: Tensor, labels: Tensor, step_mask: Tensor, label_smoothing: float = 0.0
) -> Tensor:
    """Token-level cross-entropy of per-frame classes 0..S (0 = background), mean over frames.

    logits: (B, T, S + 1); labels: (B, T), IGNORE_INDEX at padding; step_mask: (B, S).
    Label smoothing spreads its mass over each video's real classes only; torch's built-in
    `label_smoothing` would also put mass on the padded steps of shorter step lists.
    """
    classes = torch.cat([step_mask.new_ones(step_mask.shape[0], 1), step_mask], 1)  # (B, S + 1)
    log_probs = logits.masked_fill(~classes[:, None, :], float("-inf")).log_softmax(-1)
    valid = labels != IGNORE_INDEX
    nll = -log_probs.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    loss = nll
    if label_smoothing > 0:
        uniform = -log_probs.masked_fill(~classes[:, None, :], 0.0).sum(-1) / classes.sum(
            -1, keepdim=True
        )
        loss = (1 - label_smoothing) * nll + label_smoothing * uniform
    return loss[valid].mean()
