"""What an agent must beat: strategies that need no reinforcement learning, backtested with the
same `simulate` (fills, costs) as the agent.

- buy-and-hold: long every day;
- random: the mean Sharpe of seeded random policies;
- rules: follow the sign of a causal predictor known at the close (yesterday's return, the last
  month's return, a context series' return), and each rule's mirror (trade against it);
  `rule_sharpe` is the rule that scored best on the validation split, so it is what a user
  could pick without seeing the test period;
- supervised: ridge regression of the next day's return on the agent's own observation,
  fitted on the training split only, its penalty chosen on validation, traded by its sign.

Together they say how much of the available edge an agent captured: on a planted-edge market
the best rule is close to what is there to take; on pure noise they all hover around zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from datamodules.trading import BacktestAsset, simulate
from lightning_modules.trading.backtest import performance

RIDGE_PENALTIES = (1.0, 10.0, 100.0, 1_000.0, 10_000.0)


def positions_from_signal(signal: Tensor, action_mode: str) -> Tensor:
    """Trade a signal by its sign: short/long (discrete, continuous) or flat/long (long_only).
    Where the signal is unknown (NaN, e.g. before a long look-back) the position is flat."""
    side = torch.nan_to_num(torch.sign(signal), nan=0.0)
    return side.clamp(min=0.0) if action_mode == "long_only" else side


def sharpe_of(positions: Tensor, asset: BacktestAsset, cost_bps: float, execution: str) -> float:
    return performance(simulate(positions, asset, cost_bps, execution), positions)["sharpe"]


def rule_positions(asset: BacktestAsset, action_mode: str) -> dict[str, Tensor]:
    """Each rule's positions over the asset's decision days: follow_<predictor> and mirror_<predictor>."""
    out = {}
    for name, values in asset.predictors.items():
        label = name.replace("return_", "")  # return_1d -> 1d, leader_return_1d -> leader_1d
        out[f"follow_{label}"] = positions_from_signal(values, action_mode)
        out[f"mirror_{label}"] = positions_from_signal(-values, action_mode)
    return out


@dataclass
class RidgeModel:
    """Next-day return ~ ridge(flattened observation), fitted on the training split."""

    weight: Tensor  # (inputs,)
    bias: float
    penalty: float

    def predict(self, market: Tensor) -> Tensor:
        return market.flatten(1).double() @ self.weight + self.bias


def fit_ridge(assets: list[BacktestAsset], penalty: float) -> RidgeModel:
    """Closed-form ridge on the training assets' observations; the intercept is not penalized.
    Observations are already normalized with training statistics, so one penalty fits all."""
    x = torch.cat([a.market.flatten(1) for a in assets]).double()
    y = torch.cat([a.next_return for a in assets]).double()
    x_mean, y_mean = x.mean(0), y.mean()
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc + penalty * len(x) * torch.eye(x.shape[1], dtype=x.dtype) / x.shape[1]
    weight = torch.linalg.solve(gram, xc.T @ yc)
    return RidgeModel(weight, float(y_mean - x_mean @ weight), penalty)


def supervised_model(
    train: list[BacktestAsset],
    valid: list[BacktestAsset],
    cost_bps: float,
    execution: str,
    action_mode: str,
) -> RidgeModel:
    """The ridge whose penalty (from RIDGE_PENALTIES) trades best on validation."""
    best: tuple[float, RidgeModel] | None = None
    for penalty in RIDGE_PENALTIES:
        model = fit_ridge(train, penalty)
        score = float(
            np.mean(
                [
                    sharpe_of(
                        positions_from_signal(model.predict(a.market).float(), action_mode),
                        a,
                        cost_bps,
                        execution,
                    )
                    for a in valid
                ]
            )
        )
        if best is None or score > best[0]:
            best = (score, model)
    return best[1]
