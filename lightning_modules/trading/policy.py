"""Trading policies: small, deep residual networks of depthwise-separable convolutions over the
"stack of squares" market tensor [channels, window, features], then policy, value and auxiliary
heads that also see the current position.

Two trunks share the heads (`TradingPolicy`):

- `TemporalConvPolicy` (the default): the features axis holds heterogeneous quantities (OHLC
  returns, a volume z-score, volatility, per timeframe and per observed series), so it is not a
  spatial axis: neighbouring features are unrelated and a 3x3 kernel or an average across them
  mixes apples and oranges. Every (channel, feature) pair becomes a channel of a 1-D sequence
  along time; a strided "patchify" stem (ViT's patch embedding, along time only) shortens that
  sequence, depthwise convolutions mix along time within each channel and pointwise ones
  mix channels; a learned position (recency) embedding is added before every block, so location
  reaches every depth (the notes' CoordConv idea, as a 1-D embedding). The heads read every
  time patch (recent days are not averaged with old ones) plus the newest day's raw features,
  a shortcut that makes a linear edge in yesterday's bar easy to find. A PPO minibatch costs a
  few milliseconds on one CPU core (bench/trading_policy.py).
- `SquareConvPolicy`: the earlier design, kept for the ablation and the speed comparison:
  3x3 depthwise convolutions over (time, features) as if the square were an image, CoordConv
  maps, average pooling over features.

No BatchNorm by default: RL batches are correlated rollouts and BatchNorm's statistics shift
between collection (eval) and update (train); `norm: batch` stays selectable for the ablation.

The trunk sees only the market and the heads add the position, so a backtest can run the trunk
over every day of a split in one batch and only the tiny heads day by day.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.ops import SqueezeExcitation, StochasticDepth

from lightning_modules.common import Init, Norm, init_weights, make_norm

Activation = Literal["relu", "silu", "gelu"]
ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}


class TradingPolicy(nn.Module):
    """The heads every trading policy shares: a body MLP over (trunk features, position), then
    action logits (or a Gaussian mean), a value and an auxiliary next-day-return prediction.

    Subclasses build `trunk(market) -> (batch, trunk_dim)` and call `build_heads(trunk_dim)`.
    The first three constructor arguments (observation_shape, num_actions, continuous) come from
    the data; the rest are the component's own (`model.policy.init_args` in YAML).
    """

    continuous: bool

    def build_heads(
        self,
        trunk_dim: int,
        hidden: int,
        num_actions: int,
        continuous: bool,
        activation: Activation = "relu",
        highway_dim: int = 0,
    ) -> None:
        self.continuous = continuous
        self.trunk_dim = trunk_dim
        # A linear "highway" from the last `highway_dim` trunk features (the newest day's raw
        # features) and the position to every head, added to the deep path's outputs, as
        # LSTNet's autoregressive component (Lai et al. 2018): a linear edge is found by a few
        # weights that cannot memorize the training days, the deep path adds what is not linear.
        self.highway_dim = highway_dim
        outputs = (1 if continuous else num_actions) + 2
        self.highway = nn.Linear(highway_dim + 1, outputs) if highway_dim else None
        self.linear_aux = False
        act = ACTIVATIONS[activation]
        self.body = nn.Sequential(
            nn.Linear(trunk_dim + 1, hidden), act(), nn.Linear(hidden, hidden), act()
        )
        self.policy_head = nn.Linear(hidden, 1 if continuous else num_actions)
        self.value_head = nn.Linear(hidden, 1)
        self.aux_head = nn.Linear(hidden, 1)
        self.log_std = nn.Parameter(torch.full((1,), -0.5)) if continuous else None

    def highway_parameters(self) -> list[nn.Parameter]:
        """The linear highway's parameters (none without one): trained at the full rate."""
        highway = getattr(self, "highway", None)
        return list(highway.parameters()) if highway is not None else []

    def reset_parameters(self, init: Init = "orthogonal") -> None:
        """Orthogonal init as in PPO implementations (Engstrom et al. 2020; CleanRL): gain √2 for
        hidden layers, 0.01 for the policy head (near-uniform first policy), 1 for the value head
        (0.01 there kept 77% of a weak edge against 99%: bench/README.md, "Defaults that learn").
        `init` swaps the hidden layers' scheme (xavier, kaiming, or PyTorch's default); the
        heads keep theirs, which set the first policy and value scales."""
        init_weights(self, init, gain=math.sqrt(2))
        for head, gain in ((self.policy_head, 0.01), (self.value_head, 1.0), (self.aux_head, 1.0)):
            nn.init.orthogonal_(head.weight, gain)
            nn.init.zeros_(head.bias)
        if self.highway is not None:  # starts silent: the first policy stays near uniform
            nn.init.zeros_(self.highway.weight)
            nn.init.zeros_(self.highway.bias)

    def trunk(self, market: Tensor) -> Tensor:
        raise NotImplementedError

    def heads(self, trunk: Tensor, position: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(batch, trunk_dim), (batch,) → action logits or means (batch, A), value (batch,), aux (batch,)."""
        position = position.unsqueeze(-1).to(trunk.dtype)
        h = self.body(torch.cat([trunk, position], dim=-1))
        policy_out, value, aux = self.policy_head(h), self.value_head(h), self.aux_head(h)
        if self.highway is not None:
            linear = self.highway(torch.cat([trunk[:, -self.highway_dim :], position], dim=-1))
            policy_out = policy_out + linear[:, :-2]
            value = value + linear[:, -2:-1]
            aux = linear[:, -1:] if self.linear_aux else aux + linear[:, -1:]
        # float32 out of the heads even under bf16 autocast: PPO's probability ratio compares
        # log-probabilities that bf16's 8-bit mantissa would round by ~1%.
        return policy_out.float(), value.squeeze(-1).float(), aux.squeeze(-1).float()

    def distribution(self, policy_out: Tensor) -> torch.distributions.Distribution:
        if self.continuous:
            return torch.distributions.Normal(
                policy_out.squeeze(-1), self.log_std.exp(), validate_args=False
            )
        # No argument validation: its checks cost ~10 small ops per call (and a sync on a GPU).
        return torch.distributions.Categorical(logits=policy_out, validate_args=False)

    def forward(
        self, market: Tensor, position: Tensor
    ) -> tuple[torch.distributions.Distribution, Tensor, Tensor]:
        policy_out, value, aux = self.heads(self.trunk(market), position)
        return self.distribution(policy_out), value, aux


class DepthwiseTimeConv(nn.Module):
    """A depthwise convolution along time on channels-last tokens (batch, steps, channels):
    out[t, c] = sum_k weight[k, c] * x[t + k - kernel_size // 2, c] (zero padding).

    The same function as `nn.Conv1d(c, c, k, padding=k // 2, groups=c, bias=False)` (tested
    against it; no bias, since the pointwise Linear that follows has one), written as k shifted
    multiply-adds: oneDNN's depthwise Conv1d costs ~0.2 ms a call on these tiny (256 x 4 x 32)
    inputs, several times the arithmetic (bench/trading_policy.py).
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        bound = 1.0 / math.sqrt(kernel_size)  # nn.Conv1d's default for fan_in = kernel_size
        self.weight = nn.Parameter(torch.empty(kernel_size, channels).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        half, steps = self.kernel_size // 2, x.shape[1]
        padded = nn.functional.pad(x, (0, 0, half, half))
        out = padded[:, 0:steps] * self.weight[0]
        for k in range(1, self.kernel_size):
            out = out + padded[:, k : k + steps] * self.weight[k]
        return out


class TemporalBlock(nn.Module):
    """Pre-norm residual block along time: depthwise conv (mixes time within a channel) →
    norm → pointwise expand → GELU → pointwise project (mixes channels), ConvNeXt's order;
    optional dropout and stochastic depth (Huang et al. 2016) on the residual branch.
    Tokens are channels-last (batch, time, width): the pointwise convolutions are Linear layers."""

    def __init__(
        self,
        width: int,
        kernel_size: int,
        expansion: int,
        norm: Norm,
        activation: Activation,
        dropout: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.activation = ACTIVATIONS[activation]()
        self.depthwise = DepthwiseTimeConv(width, kernel_size)
        self.norm = token_norm(norm, width)
        self.expand = nn.Linear(width, width * expansion)
        self.project = nn.Linear(width * expansion, width)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.activation(self.expand(self.norm(self.depthwise(x))))
        return x + self.drop_path(self.project(self.dropout(hidden)))


class _ChannelsFirst(nn.Module):
    """Applies a (batch, channels, time) normalization to channels-last tokens."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


def token_norm(kind: Norm, width: int) -> nn.Module:
    """`make_norm` for channels-last tokens (batch, time, width): layer normalizes each token's
    channels (nn.LayerNorm, as transformers do); group and batch act over (channels, time)."""
    if kind == "layer":
        return nn.LayerNorm(width)
    if kind == "none":
        return nn.Identity()
    return _ChannelsFirst(make_norm(kind, width, dims=1))


class TemporalConvPolicy(TradingPolicy):
    """Features as channels, separable convolutions along (patchified) time, recency embeddings
    at every depth, heads over every patch and the newest raw day (see the module docstring)."""

    def __init__(
        self,
        observation_shape: tuple[int, int, int],
        num_actions: int,
        continuous: bool = False,
        width: int = 24,
        depth: int = 4,
        time_patch: int = 8,
        kernel_size: int = 3,
        expansion: int = 1,
        norm: Norm = "none",
        activation: Activation = "relu",
        position: bool = True,
        latest_day: bool = True,
        highway: bool = True,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        hidden: int = 64,
        init: Init = "orthogonal",
    ) -> None:
        """
        Args:
            observation_shape: (channels, window, features) of the market tensor (from the data).
            num_actions: 3 (short/flat/long), 2 (flat/long) or 1 (continuous; from the data).
            continuous: a Gaussian position instead of discrete actions (from the data).
            width: channels of the residual trunk. 24 and `expansion` 1, as
                configs/ppo_trader.yaml ships (32 and 2 until 2026-12-07: 1.4x the cost of a
                PPO minibatch on one thread of an AMD EPYC with avx2/avx512_vnni, no AMX;
                learning no worse; bench/README.md, "Defaults that learn").
            depth: residual blocks.
            time_patch: days per time patch of the stem (the window is padded to a multiple).
            kernel_size: patches each depthwise convolution spans (odd).
            expansion: width multiplier inside each block's pointwise pair.
            norm: none, layer, group or batch (the ablation) inside each block.
            activation: relu, silu or gelu inside the trunk (gelu's erf costs ~30x relu's on
                CPU at these sizes; bench/trading_policy.py).
            position: add a learned recency embedding before every block (location across depth).
            latest_day: the heads also read the newest day's raw features.
            highway: and a linear map of them goes straight to every head's output (LSTNet's
                autoregressive highway; needs latest_day).
            dropout: dropout inside each block.
            drop_path: stochastic-depth rate of the last block (increasing linearly with depth).
            hidden: width of the heads' shared MLP.
            init: orthogonal (PPO's), xavier, kaiming or default (PyTorch's) for hidden layers.
        """
        super().__init__()
        channels, window, features = observation_shape
        self.time_patch = time_patch
        self.pad = (-window) % time_patch
        self.patches = (window + self.pad) // time_patch
        inputs = channels * features
        # A strided Conv1d(inputs, width, time_patch, stride=time_patch) as one Linear over each
        # patch's (time_patch * inputs) values: the same map, without oneDNN's small-conv cost.
        self.stem = nn.Linear(inputs * time_patch, width)
        self.positions = (
            nn.ParameterList(nn.Parameter(torch.zeros(self.patches, width)) for _ in range(depth))
            if position
            else None
        )
        self.blocks = nn.ModuleList(
            TemporalBlock(
                width,
                kernel_size,
                expansion,
                norm,
                activation,
                dropout,
                drop_path * (i + 1) / depth,
            )
            for i in range(depth)
        )
        self.latest_day = latest_day
        trunk_dim = width * self.patches + (inputs if latest_day else 0)
        highway = inputs if latest_day and highway else 0
        self.build_heads(trunk_dim, hidden, num_actions, continuous, activation, highway)
        self.reset_parameters(init)

    def trunk(self, market: Tensor) -> Tensor:
        """(batch, channels, window, features) → (batch, trunk_dim)."""
        batch, channels, window, features = market.shape
        days = market.permute(0, 2, 1, 3).reshape(batch, window, channels * features)
        if self.pad:  # zero days before the oldest, so the newest day ends the last patch
            days = nn.functional.pad(days, (0, 0, self.pad, 0))
        x = self.stem(days.reshape(batch, self.patches, -1))  # (batch, patches, width)
        for i, block in enumerate(self.blocks):
            if self.positions is not None:
                x = x + self.positions[i]
            x = block(x)
        out = self.blocks[-1].activation(x).flatten(1) if self.blocks else x.flatten(1)
        return torch.cat([out, days[:, -1]], dim=1) if self.latest_day else out


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


class SquareBlock(nn.Module):
    """Pre-activation residual block: norm → GELU → separable conv, twice; optional
    squeeze-excitation, dropout and stochastic depth on the residual branch."""

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


class SquareConvPolicy(TradingPolicy):
    """The square as an image: 3×3 separable convolutions over (time, features), CoordConv maps,
    pooling over features into `time_bins` (kept for the ablation and the speed comparison)."""

    def __init__(
        self,
        observation_shape: tuple[int, int, int],
        num_actions: int,
        continuous: bool = False,
        width: int = 16,
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
        """
        Args:
            observation_shape: (channels, window, features) of the market tensor (from the data).
            num_actions: 3, 2 or 1 (continuous; from the data).
            continuous: a Gaussian position instead of discrete actions (from the data).
            width: channels of the residual trunk.
            depth: residual blocks.
            norm: group, layer, batch or none.
            coord_channels: add CoordConv maps along time and features.
            position_embedding: add a learned (channels, window, features) map to the input.
            dropout: dropout inside residual blocks.
            drop_path: stochastic-depth rate of the last block.
            squeeze_excitation: squeeze-and-excitation at the end of each block.
            hidden: width of the heads' shared MLP.
            time_bins: time bins kept by the final pooling.
            time_patch: days per patch of the stem.
            init: orthogonal, xavier, kaiming or default for hidden layers.
        """
        super().__init__()
        channels, window, features = observation_shape
        self.register_buffer("coords", coordinate_channels(window, features), persistent=False)
        self.use_coords = coord_channels
        self.position_embedding = (
            nn.Parameter(torch.zeros(1, channels, window, features)) if position_embedding else None
        )
        stem_in = channels + (2 if coord_channels else 0)
        self.stem = nn.Conv2d(stem_in, width, kernel_size=(time_patch, 1), stride=(time_patch, 1))
        self.blocks = nn.Sequential(
            *[
                SquareBlock(width, norm, dropout, drop_path * (i + 1) / depth, squeeze_excitation)
                for i in range(depth)
            ]
        )
        self.final_norm = make_norm(norm, width)
        self.pool = nn.AdaptiveAvgPool2d((time_bins, 1))
        # GELU as the design had it (erf-based GELU is what made it slow on CPU).
        self.build_heads(width * time_bins, hidden, num_actions, continuous, "gelu")
        self.reset_parameters(init)

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
