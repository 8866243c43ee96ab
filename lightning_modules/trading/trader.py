"""What every trading agent shares, whatever trains it: the policy component, the data it gets
in `setup` (one typed `TradingData`), validation and test backtests (evaluation.py), the
validation Sharpe kept in checkpoints for ensembles. The algorithms are ppo.py and a2c.py.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from casebook.common.errors import DataError
from datamodules.hparams import from_plain
from datamodules.trading import TradingData
from datamodules.trading.env import ActionMode
from lightning_modules.trading.evaluation import BacktestConfig, Backtester, load_ensemble
from lightning_modules.trading.policy import TemporalConvPolicy, TradingPolicy

# The policy component: a TradingPolicy class whose first three arguments (observation_shape,
# num_actions, continuous) the module supplies from the data; YAML gives the rest:
#   policy: {class_path: lightning_modules.trading.TemporalConvPolicy, init_args: {width: 32}}
PolicyFactory = Callable[[tuple[int, int, int], int, bool], TradingPolicy]


class TradingAgent(L.LightningModule):
    """Base of the trading LightningModules: a policy, backtests, and nothing about training."""

    def __init__(
        self,
        policy: PolicyFactory = TemporalConvPolicy,
        backtest: BacktestConfig = BacktestConfig(),
        observation_shape: tuple[int, int, int] = (3, 32, 6),
        num_actions: int = 3,
        action_mode: ActionMode = "discrete",
    ) -> None:
        super().__init__()
        policy = from_plain(policy)
        backtest = from_plain(backtest, BacktestConfig)
        self.build_policy = lambda: policy(
            tuple(observation_shape), num_actions, action_mode == "continuous"
        )
        self.policy = self.build_policy()
        self.backtest_config = backtest
        self.action_mode = action_mode
        self.data: TradingData | None = None
        self.backtester: Backtester | None = None
        self.last_val_sharpe: float | None = None

    # ------------------------------------------------------------------ the data, once
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if not hasattr(datamodule, "trading_data"):
            raise DataError(
                f"{type(self).__name__} needs a trading datamodule (MarketDataModule), "
                f"got {type(datamodule).__name__}"
            )
        self.data = datamodule.trading_data()
        self.backtester = Backtester(self.data, self.backtest_config)
        if self.data.leak_future_return and stage == "test" and self.data.real_data:
            raise DataError(
                "--data.leak_future_return is the leakage canary: it puts tomorrow's return in "
                "every observation, so `casebook test` refuses it on real data"
            )
        if self.data.leak_future_return:
            rank_zero_warn(
                "LEAKAGE CANARY ON: every figure of this run is fake (see --data.leak_future_return)"
            )

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        metrics, _ = self.backtester.evaluate("valid", [self.policy], [1.0], self.device)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, batch_size=1, sync_dist=True)
        if not self.trainer.sanity_checking:
            self.last_val_sharpe = metrics["sharpe"]
            # The same deterministic backtest on the training period: TrainValidSkew compares the two.
            train, _ = self.backtester.evaluate(
                "train", [self.policy], [1.0], self.device, baselines=False
            )
            self.log("train/sharpe", train["sharpe"], batch_size=1, sync_dist=True)

    def test_step(self, batch: Tensor, batch_idx: int) -> None:
        members, weights = self.ensemble()
        metrics, runs = self.backtester.evaluate(
            "test", members, weights, self.device, interval=True
        )
        metrics["edge_found"] = float(metrics["sharpe_ci_low"] > 0)
        if self.data.leak_future_return:
            metrics["leakage_canary"] = 1.0
        self.log_dict({f"test/{k}": v for k, v in metrics.items()}, batch_size=1, sync_dist=True)
        self.backtester.figures(self.trainer, "test", runs)
        report = self.backtester.report(self.trainer, "test", metrics)
        if self.trainer.is_global_zero:
            print(f"\nBacktest of the test split (costs {self.data.cost_bps:g} bp):\n{report}")

    def check_prerequisites(self, stage: str) -> None:
        """Called by the CLI before any logger starts: a test's ensemble checkpoints are read (one
        line naming a missing, unreadable or mismatched one)."""
        if stage == "test" and self.backtest_config.ensemble_checkpoints:
            load_ensemble(
                self.backtest_config.ensemble_checkpoints,
                self.build_policy,
                torch.device("cpu"),
                self.backtest_config.ensemble_weighting,
            )

    def ensemble(self) -> tuple[list[TradingPolicy], list[float]]:
        paths = self.backtest_config.ensemble_checkpoints
        if not paths:
            return [self.policy], [1.0]
        return load_ensemble(
            paths, self.build_policy, self.device, self.backtest_config.ensemble_weighting
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["val_sharpe"] = self.last_val_sharpe

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.last_val_sharpe = checkpoint.get("val_sharpe")


def explained_variance(predicted: Tensor, target: Tensor) -> Tensor:
    """1 - Var[target - predicted] / Var[target]: 1 is a perfect value function, ≤ 0 no better
    than a constant (NaN when the target is constant). No host synchronization."""
    variance = target.var()
    return torch.where(
        variance > 0,
        1.0 - (target - predicted).var() / variance,
        torch.full_like(variance, float("nan")),
    )
