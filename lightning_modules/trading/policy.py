"""The trading policy: a small, deep residual CNN with depthwise-separable convolutions over the
"stack of squares" market tensor [channels, window, features], then policy, value and auxiliary
heads that also see the current position.

No BatchNorm by default: RL batches are correlated rollouts and BatchNorm's statistics shift
between collection (eval) and update (train); GroupNorm or LayerNorm normalize per sample.
BatchNorm stays selectable for the ablation (``norm: batch``).

The trunk sees only the market and the heads add the position, so a backtest can run the trunk
over every day of a split in one batch and only the tiny heads day by day.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import SqueezeExcitation, StochasticDepth

from lightning_modules.common import Init, Norm, init_weights, make_norm


class SeparableConv(nn.Module):
    """Depthwise 3×3 over (time, features) per channel, then a pointwise 1×1 mixing channels."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            channels, channels, kernel_size, padding=kernel_size // 2, groups=channels
        )
        self.pointwise = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """Pre-activation residual block: norm → GELU → separable conv, twice; optional
    squeeze-excitation, dropout and stochastic depth (Huang et al. 2016) on the residual branch."""

    def __init__(
        self, channels: int, norm: Norm, dropout: float, drop_path: float, squeeze_excitation: bool
    ) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            make_norm(norm, channels),
            nn.GELU(),
            SeparableConv(channels),
            make_norm(norm, channels),
            nn.GELU(),
            nn.Dropout(dropout),
            SeparableConv(channels),
            SqueezeExcitation(channels, max(channels // 4, 4))
            if squeeze_excitation
            else nn.Identity(),
        )
        self.drop_path = StochasticDepth(drop_path, "row")

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop_path(self.branch(x))


def coordinate_channels(window: int, features: int) -> Tensor:
    """CoordConv (Liu et al. 2018): two constant maps in [-1, 1], one along time, one along features."""
    time = torch.linspace(-1.0, 1.0, window).view(window, 1).expand(window, features)
    depth = torch.linspace(-1.0, 1.0, features).view(1, features).expand(window, features)
    return torch.stack([time, depth])  # (2, window, features)


class TradingPolicy(nn.Module):
    """Residual separable CNN trunk + heads for the action distribution, the value, and an
    auxiliary prediction (multi-objective training)."""

    def __init__(
        self,
        observation_shape: tuple[int, int, int],
        num_actions: int,
        continuous: bool = False,
        width: int = 32,
        depth: int = 6,
        norm: Norm = "group",
        coord_channels: bool = True,
        position_embedding: bool = False,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        squeeze_excitation: bool = False,
        hidden: int = 64,
        time_bins: int = 4,
        time_patch: int = 2,
        init: Init = "orthogonal",
    ) -> None:
        super().__init__()
        channels, window, features = observation_shape
        self.continuous = continuous
        self.register_buffer("coords", coordinate_channels(window, features), persistent=False)
        self.use_coords = coord_channels
        # A learned map added to the input: location along time and features as a parameter.
        self.position_embedding = (
            nn.Parameter(torch.zeros(1, channels, window, features)) if position_embedding else None
        )
        stem_in = channels + (2 if coord_channels else 0)
        # Patchify along time (non-overlapping `time_patch`-day patches, as ViT's patch embedding):
        # the blocks then run on a shorter axis, which is most of the CPU cost.
        self.stem = nn.Conv2d(stem_in, width, kernel_size=(time_patch, 1), stride=(time_patch, 1))
        self.blocks = nn.Sequential(
            *[
                ResidualBlock(width, norm, dropout, drop_path * (i + 1) / depth, squeeze_excitation)
                for i in range(depth)
            ]
        )
        self.final_norm = make_norm(norm, width)
        # Pool features away but keep a coarse time axis: recent days matter more than old ones.
        self.pool = nn.AdaptiveAvgPool2d((time_bins, 1))
        self.trunk_dim = width * time_bins
        self.body = nn.Sequential(
            nn.Linear(self.trunk_dim + 1, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.policy_head = nn.Linear(hidden, 1 if continuous else num_actions)
        self.value_head = nn.Linear(hidden, 1)
        self.aux_head = nn.Linear(hidden, 1)
        self.log_std = nn.Parameter(torch.full((1,), -0.5)) if continuous else None
        self.reset_parameters(init)

    def reset_parameters(self, init: Init = "orthogonal") -> None:
        """Orthogonal init as in PPO implementations (Engstrom et al. 2020; CleanRL): gain √2 for
        hidden layers, 0.01 for the policy head (near-uniform first policy), 1 for the value head.
        `init` swaps the hidden layers' scheme (xavier, kaiming, or PyTorch's default); the
        heads keep theirs, which set the first policy and value scales."""
        init_weights(self, init, gain=math.sqrt(2))
        for head, gain in ((self.policy_head, 0.01), (self.value_head, 1.0), (self.aux_head, 1.0)):
            nn.init.orthogonal_(head.weight, gain)
            nn.init.zeros_(head.bias)

    def trunk(self, market: Tensor) -> Tensor:
        """(batch, channels, window, features) → (batch, trunk_dim)."""
        x = market
        if self.position_embedding is not None:
            x = x + self.position_embedding
        if self.use_coords:
            x = torch.cat([x, self.coords.expand(x.shape[0], -1, -1, -1)], dim=1)
        x = self.blocks(self.stem(x))
        x = torch.nn.functional.gelu(self.final_norm(x))
        return self.pool(x).flatten(1)

    def heads(self, trunk: Tensor, position: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(batch, trunk_dim), (batch,) → action logits or means (batch, A), value (batch,), aux (batch,)."""
        h = self.body(torch.cat([trunk, position.unsqueeze(-1)], dim=-1))
        # float32 out of the heads even under bf16 autocast: PPO's probability ratio compares
        # log-probabilities that bf16's 8-bit mantissa would round by ~1%.
        policy_out, value, aux = self.policy_head(h), self.value_head(h), self.aux_head(h)
        return policy_out.float(), value.squeeze(-1).float(), aux.squeeze(-1).float()

    def distribution(self, policy_out: Tensor) -> torch.distributions.Distribution:
        if self.continuous:
            return torch.distributions.Normal(policy_out.squeeze(-1), self.log_std.exp())
        return torch.distributions.Categorical(logits=policy_out)

    def forward(
        self, market: Tensor, position: Tensor
    ) -> tuple[torch.distributions.Distribution, Tensor, Tensor]:
        policy_out, value, aux = self.heads(self.trunk(market), position)
        return self.distribution(policy_out), value, aux
