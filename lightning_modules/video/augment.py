"""Training-time frame augmentation of the video modules, applied to a batch on its device.

- `cutout`: each frame (ClipPretrainer) or each video (StepAligner: the same box in all of its
  frames, a static occluder) gets one erased rectangle with probability `prob` (DeVries & Taylor
  2017), by torchvision's `RandomErasing`.
- `mix_inputs`: Mixup (Zhang et al. 2018) of every input with its batch neighbour (row i with
  row i - 1, as torchvision's MixUp pairs them). For contrastive pairs the targets mix the same
  way (i-Mix, Lee et al. 2021): `ClipPretrainer` weights its loss against the neighbour's texts by
  1 - lambda. Hand-written: torchvision's MixUp mixes one-hot class labels, and CLIP has none.
- `add_feature_noise`: isotropic Gaussian noise on precomputed frame features (StepAligner over
  `--data.source features`), scaled to the batch's feature norm; fresh noise each step keeps a
  model from memorizing a small training set's frames (hand-written: a one-liner torchvision's
  image transforms do not offer for (B, T, D) features).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.transforms import v2

CUTOUT_SCALE = (0.02, 0.2)  # erased share of the frame area (RandomErasing's default is 0.02-0.33)


def cutout(images: Tensor, prob: float) -> Tensor:
    """(N, ..., 3, H, W) -> the same with one zeroed box per item (shared by an item's frames)
    with probability `prob`; a new tensor, the input is left alone."""
    if prob <= 0:
        return images
    erase = v2.RandomErasing(p=prob, scale=CUTOUT_SCALE, value=0.0)
    return torch.stack([erase(item) for item in images])


def mix_inputs(inputs: Tensor, alpha: float) -> tuple[Tensor, float]:
    """(lambda * inputs + (1 - lambda) * inputs.roll(1, 0), lambda), lambda ~ Beta(alpha, alpha)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    return lam * inputs + (1.0 - lam) * inputs.roll(1, 0), lam


def add_feature_noise(features: Tensor, frame_mask: Tensor, scale: float) -> Tensor:
    """(B, T, D) features + N(0, sigma^2 I) at real frames, sigma = scale * (mean norm of the
    real frames' features) / sqrt(D): the noise's expected norm is `scale` times a mean feature's."""
    if scale <= 0:
        return features
    real = frame_mask[..., None].to(features.dtype)  # (B, T, 1)
    mean_norm = (features.norm(dim=-1, keepdim=True) * real).sum() / real.sum().clamp_min(1)
    sigma = scale * mean_norm.detach() / features.shape[-1] ** 0.5
    return features + torch.randn_like(features) * sigma * real
