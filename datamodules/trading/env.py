"""A batched trading environment in pure torch, and the one P&L formula it shares with backtests.

N episodes run as one tensor program: no Python loop over environments, the same code on CPU or
CUDA (`env.to(device)`). Hand-written rather than a Gymnasium vector env because a vector env
steps N Python objects; here a step is a handful of tensor ops. `TradingGymEnv` (gym_env.py)
wraps it for one-episode Gymnasium use.

Timing. The observation of decision day t uses data up to the close of t. The action chosen on it
fills at the OPEN of t+1 (execution="next_open"), so the reward delivered with the observation of
t+1 is

    previous_position * log(open[t+1] / close[t])      # the overnight gap, old position
    + position * log(close[t+1] / open[t+1])           # the day, new position
    - cost_bps * 1e-4 * |position - previous_position|

execution="close" fills at the close of t instead: position * log(close[t+1] / close[t]) - cost.
`net_log_returns` is that formula, used by `BatchedTradingEnv.step` and by `simulate` alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import pandas as pd
import torch
from torch import Tensor

ActionMode = Literal["discrete", "long_only", "continuous"]
Reward = Literal["log_return", "differential_sharpe"]
Execution = Literal["next_open", "close"]
ACTION_MODES: tuple[str, ...] = get_args(ActionMode)
REWARDS: tuple[str, ...] = get_args(Reward)
EXECUTIONS: tuple[str, ...] = get_args(Execution)


def num_actions_for(action_mode: ActionMode) -> int:
    """3 (short/flat/long), 2 (flat/long), or 1 (a continuous position)."""
    if action_mode not in ACTION_MODES:
        raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
    return {"discrete": 3, "long_only": 2, "continuous": 1}[action_mode]


def positions_from_actions(action: Tensor, action_mode: ActionMode) -> Tensor:
    """discrete: ints 0,1,2 -> -1,0,1; long_only: ints 0,1 -> 0,1; continuous: clamp to [-1, 1].

    Out-of-range ints are clamped rather than checked: a check would synchronize with the GPU.
    """
    if action_mode == "discrete":
        return action.reshape(-1).long().clamp(0, 2).float() - 1.0
    if action_mode == "long_only":
        return action.reshape(-1).long().clamp(0, 1).float()
    return action.reshape(-1).float().clamp(-1.0, 1.0)


def net_log_returns(
    previous_position: Tensor,
    position: Tensor,
    next_gap: Tensor,
    next_intraday: Tensor,
    cost_bps: float,
    execution: Execution = "next_open",
) -> Tensor:
    """Net log return of holding `position` over the next bar (see the module docstring).

    next_gap = log(open[t+1] / close[t]), next_intraday = log(close[t+1] / open[t+1]).
    """
    overnight = previous_position if execution == "next_open" else position
    cost = cost_bps * 1e-4 * (position - previous_position).abs()
    return overnight * next_gap + position * next_intraday - cost


def differential_sharpe_ratio(
    log_return: Tensor, mean: Tensor, second_moment: Tensor, eta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Moody & Saffell 1998, eq. 13: the Sharpe ratio's first-order sensitivity to this return.

    `mean` (A) and `second_moment` (B) are exponential moving moments with rate `eta`;
    returns (D_t, A_t, B_t).
    """
    delta_mean = log_return - mean
    delta_second = log_return * log_return - second_moment
    variance = (second_moment - mean * mean).clamp_min(1e-12)
    reward = (second_moment * delta_mean - 0.5 * mean * delta_second) / variance.pow(1.5)
    return reward, mean + eta * delta_mean, second_moment + eta * delta_second


@dataclass
class MarketTable:
    """All assets' days back to back: row r is one trading day of one asset.

    Observation rows of a decision row never cross into another asset because decision days
    start `observation_span` days into each asset.
    """

    features: Tensor  # (rows, channels, features) float32, normalized and clipped
    gap: Tensor  # (rows,) log(open[r] / close[r-1]); 0 on an asset's first day
    intraday: Tensor  # (rows,) log(close[r] / open[r])
    asset: np.ndarray  # (rows,) asset index
    dates: np.ndarray  # (rows,) datetime64[ns]
    asset_names: list[str]

    def to(self, device: torch.device | str) -> MarketTable:
        return MarketTable(
            self.features.to(device),
            self.gap.to(device),
            self.intraday.to(device),
            self.asset,
            self.dates,
            self.asset_names,
        )


def gather_market(features: Tensor, rows: Tensor, window: int) -> Tensor:
    """Observations of decision rows: (n,) -> (n, channels, window, features), oldest day first."""
    offsets = torch.arange(1 - window, 1, device=features.device)
    days = (rows[:, None] + offsets).reshape(-1)
    # index_select, not features[days]: advanced indexing is ~100x slower here on CPU
    picked = features.index_select(0, days).view(len(rows), window, *features.shape[1:])
    return picked.permute(0, 2, 1, 3).contiguous()


@dataclass
class BacktestAsset:
    """One asset over consecutive decision days of a split, everything `simulate` needs.

    Element i belongs to decision day dates[i]: its observation, and the prices of the next
    day, on which the position chosen on dates[i] earns its return.
    """

    name: str
    dates: pd.DatetimeIndex  # decision days
    market: Tensor  # (days, channels, window, features) float32
    next_gap: Tensor  # (days,) log(open[t+1] / close[t])
    next_intraday: Tensor  # (days,) log(close[t+1] / open[t+1])
    close: Tensor  # (days,) close of the decision day, for equity curves
    # Raw causal predictors known at each decision day's close, for the rule baselines:
    # "return_1d", "return_21d", and "<context>_return_1d" for each series observed alongside.
    predictors: dict[str, Tensor] = field(default_factory=dict)

    @property
    def next_return(self) -> Tensor:
        """(days,) the close-to-close log return of the day after each decision day."""
        return self.next_gap + self.next_intraday

    def __len__(self) -> int:
        return len(self.dates)


def simulate(
    positions: Tensor,
    asset: BacktestAsset,
    cost_bps: float = 5.0,
    execution: Execution = "next_open",
    initial_position: float = 0.0,
) -> Tensor:
    """Per-day net log returns of a deterministic backtest.

    positions: (..., days) position chosen after the close of each decision day of `asset`
    (-1..1; leading dimensions batch several strategies). Returns (..., days): element i is the
    net log return realized over the day after dates[i]. Starts from `initial_position`
    (flat), as an environment episode does.
    """
    positions = positions.to(asset.next_gap.dtype)
    previous = torch.cat(
        [torch.full_like(positions[..., :1], initial_position), positions[..., :-1]], dim=-1
    )
    return net_log_returns(
        previous, positions, asset.next_gap, asset.next_intraday, cost_bps, execution
    )


class BatchedTradingEnv:
    """N trading episodes stepped together; each is `episode_length` decision days of one asset.

    reset() -> (market (N, C, W, F) float32, position (N,) float32)
    step(action (N,)) -> (market, position, reward (N,), done (N,) bool, info)

    A finished episode restarts in the same step (as CleanRL's vector envs do): the returned
    observation is the new episode's first, and `info` holds, as (N,) tensors valid where `done`,
    "episode_return" (sum of rewards), "episode_log_return" (sum of net log returns),
    "episode_length", and "final_market"/"final_position", the observation after the last step
    (for bootstrapping a truncated episode). Episodes end only by time limit. Every step draws N
    candidate starts from the environment's own CPU `torch.Generator`, used where `done`; so
    runs are reproducible and identical on CPU and CUDA.
    """

    def __init__(
        self,
        table: MarketTable,
        episode_firsts: Tensor,
        episode_lasts: Tensor,
        *,
        window: int,
        num_envs: int = 64,
        action_mode: ActionMode = "discrete",
        cost_bps: float = 5.0,
        reward: Reward = "log_return",
        execution: Execution = "next_open",
        dsr_eta: float = 0.01,
        dsr_initial_variance: float = 1e-4,
        observation_bound: float = 10.0,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        if execution not in EXECUTIONS:
            raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
        if len(episode_firsts) == 0:
            raise ValueError("no episode fits in this split")
        self.num_actions = num_actions_for(action_mode)
        self.action_mode = action_mode
        self.num_envs = num_envs
        self.window = window
        self.cost_bps = cost_bps
        self.reward = reward
        self.execution = execution
        self.dsr_eta = dsr_eta
        self.dsr_initial_variance = dsr_initial_variance
        self.observation_bound = observation_bound
        self.device = torch.device(device)
        self.table = table.to(self.device)
        self.episode_firsts = episode_firsts.long().to(self.device)
        self.episode_lasts = episode_lasts.long().to(self.device)
        self.generator = torch.Generator()  # CPU on purpose: same draws on every device
        self.generator.manual_seed(seed)
        # When every episode has the same length, they all start at reset and end together, so
        # the host knows when one may end without asking the device (`may_end_episode`).
        lengths = (self.episode_lasts - self.episode_firsts + 1).unique()
        self.uniform_length = int(lengths[0]) if len(lengths) == 1 else None
        self.host_steps = 0
        zeros = torch.zeros(num_envs, device=self.device)
        self.row = torch.zeros(num_envs, dtype=torch.long, device=self.device)  # decision row
        self.last_row = torch.zeros_like(self.row)  # the episode's last decision row
        self.steps = torch.zeros_like(self.row)
        self.position = zeros.clone()
        self.episode_return = zeros.clone()
        self.episode_log_return = zeros.clone()
        self.dsr_mean = zeros.clone()
        self.dsr_second_moment = zeros.clone()
        self.reset()

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        _, channels, features = self.table.features.shape
        return channels, self.window, features

    @property
    def may_end_episode(self) -> bool:
        """After a `step`: could an episode have ended with it? Exact when all episodes have
        the same length, else always True. Read on the host, with no device synchronization."""
        return self.uniform_length is None or self.host_steps % self.uniform_length == 0

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def observe(self) -> tuple[Tensor, Tensor]:
        """The current observation, without changing any state (e.g. after load_state_dict)."""
        return gather_market(self.table.features, self.row, self.window), self.position.clone()

    def current_dates(self) -> np.ndarray:
        """Decision day of each environment (datetime64), for inspection and tests."""
        return self.table.dates[self.row.cpu().numpy()]

    def current_assets(self) -> list[str]:
        return [self.table.asset_names[a] for a in self.table.asset[self.row.cpu().numpy()]]

    def reset(self) -> tuple[Tensor, Tensor]:
        self.host_steps = 0
        self._restart(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self.observe()

    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        position = positions_from_actions(action.to(self.device), self.action_mode)
        next_row = self.row + 1
        log_return = net_log_returns(
            self.position,
            position,
            self.table.gap[next_row],
            self.table.intraday[next_row],
            self.cost_bps,
            self.execution,
        )
        if self.reward == "differential_sharpe":
            reward, self.dsr_mean, self.dsr_second_moment = differential_sharpe_ratio(
                log_return, self.dsr_mean, self.dsr_second_moment, self.dsr_eta
            )
        else:
            reward = log_return
        self.position = position
        self.row = next_row
        self.steps = self.steps + 1
        self.host_steps += 1
        self.episode_return = self.episode_return + reward
        self.episode_log_return = self.episode_log_return + log_return
        done = self.row > self.last_row
        info = {
            "episode_return": self.episode_return,
            "episode_log_return": self.episode_log_return,
            "episode_length": self.steps,
            "log_return": log_return,
            # the asset's own close-to-close move, whatever the position: an auxiliary target
            "market_log_return": self.table.gap[next_row] + self.table.intraday[next_row],
            "final_market": gather_market(self.table.features, self.row, self.window),
            "final_position": self.position,
        }
        self._restart(done)
        market, position = self.observe()
        return market, position, reward, done, info

    def _restart(self, mask: Tensor) -> None:
        """Start new episodes where `mask`; tensors are replaced, never written in place."""
        pick = torch.randint(len(self.episode_firsts), (self.num_envs,), generator=self.generator)
        pick = pick.to(self.device)
        self.row = torch.where(mask, self.episode_firsts[pick], self.row)
        self.last_row = torch.where(mask, self.episode_lasts[pick], self.last_row)
        zero = torch.zeros((), device=self.device)
        self.steps = torch.where(mask, 0, self.steps)
        self.position = torch.where(mask, zero, self.position)
        self.episode_return = torch.where(mask, zero, self.episode_return)
        self.episode_log_return = torch.where(mask, zero, self.episode_log_return)
        self.dsr_mean = torch.where(mask, zero, self.dsr_mean)
        # Start B at a typical daily variance, not 0, so the first rewards are O(1), not 1/eps.
        self.dsr_second_moment = torch.where(
            mask, zero + self.dsr_initial_variance, self.dsr_second_moment
        )

    _STATE = (
        "row",
        "last_row",
        "steps",
        "position",
        "episode_return",
        "episode_log_return",
        "dsr_mean",
        "dsr_second_moment",
    )

    def state_dict(self) -> dict:
        state = {name: getattr(self, name).detach().cpu().clone() for name in self._STATE}
        state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        if state["row"].shape != (self.num_envs,):
            raise ValueError(
                f"state has {state['row'].shape[0]} environments, this env has {self.num_envs}"
            )
        for name in self._STATE:
            setattr(self, name, state[name].to(self.device).clone())
        self.generator.set_state(state["generator"])
        self.host_steps = int(state["steps"][0])  # all equal when episodes share one length

    def to(self, device: torch.device | str) -> BatchedTradingEnv:
        self.device = torch.device(device)
        self.table = self.table.to(self.device)
        self.episode_firsts = self.episode_firsts.to(self.device)
        self.episode_lasts = self.episode_lasts.to(self.device)
        for name in self._STATE:
            setattr(self, name, getattr(self, name).to(self.device))
        return self
