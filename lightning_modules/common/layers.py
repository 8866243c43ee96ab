"""Initialization schemes and normalization layers, chosen by name from a config:
`init_weights(module, "orthogonal", gain=math.sqrt(2))` re-initializes every Linear and
convolution, `make_norm("group", channels)` builds a GroupNorm, LayerNorm, BatchNorm or nothing."""

from __future__ import annotations

import math
from typing import Literal

from torch import nn
from torch.nn.utils import parametrize

Init = Literal["default", "orthogonal", "xavier", "kaiming"]
Norm = Literal["group", "layer", "batch", "none"]
INITIALIZED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def init_weights(module: nn.Module, scheme: Init, gain: float = 1.0) -> nn.Module:
    """Re-initialize the weight of every Linear and convolution inside `module`, biases to zero.

    default: leave PyTorch's (or transformers') own initialization;
    orthogonal: orthogonal rows scaled by `gain` (Saxe et al. 2014; PPO uses sqrt(2), Engstrom et al. 2020);
    xavier: Glorot uniform, std sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio 2010);
    kaiming: He normal for ReLU-like layers, std sqrt(2 / fan_in) (He et al. 2015).
    Weight-normalized layers (a parametrized weight, e.g. wav2vec2's positional convolution)
    keep theirs: writing into a computed weight would not persist. Returns `module`.
    """
    if scheme not in ("default", "orthogonal", "xavier", "kaiming"):
        raise ValueError(f"init must be default, orthogonal, xavier or kaiming, not {scheme!r}")
    if scheme == "default":
        return module
    for layer in module.modules():
        if not isinstance(layer, INITIALIZED) or parametrize.is_parametrized(layer):
            continue
        if scheme == "orthogonal":
            nn.init.orthogonal_(layer.weight, gain)
        elif scheme == "xavier":
            nn.init.xavier_uniform_(layer.weight)
        else:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return module


def make_norm(kind: Norm, channels: int, groups: int = 8, dims: int = 2) -> nn.Module:
    """A normalization of (batch, channels, ...) feature maps with `dims` spatial dimensions.

    group: GroupNorm with up to `groups` groups (Wu & He 2018); layer: one group, i.e. LayerNorm
    over channels and positions; batch: BatchNorm over the batch (its statistics differ between
    train and eval mode); none: identity.
    """
    if kind == "group":
        return nn.GroupNorm(math.gcd(groups, channels), channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "batch":
        return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be group, layer, batch or none, not {kind!r}")
