"""Backtesting a trading policy against its baselines, ensembles of checkpoints, and the report.

Every validation epoch and every `casebook test` backtests the deterministic policy over each
asset of the split (`Backtester.evaluate`), next to buy-and-hold, random policies, the rule
baselines and the supervised baseline (baselines.py), all through the same `simulate`. The
test report (`reports/test-backtest.md`, printed) says whether the agent's edge is
distinguishable from noise: a block-bootstrap confidence interval of its Sharpe ratio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from casebook.common.errors import DataError, first_line
from casebook.common.figures import log_figure
from casebook.common.tables import log_table, markdown_table
from datamodules.trading import BacktestAsset, TradingData, simulate
from lightning_modules.trading.backtest import (
    equity_figure,
    performance,
    sharpe_interval,
    trades,
    worst_trades_figure,
)
from lightning_modules.trading.baselines import (
    RidgeModel,
    positions_from_signal,
    rule_positions,
    sharpe_of,
    supervised_model,
)
from lightning_modules.trading.policy import TradingPolicy

REPORTED = (
    "sharpe",
    "total_return",
    "annual_return",
    "sortino",
    "max_drawdown",
    "turnover",
    "hit_rate",
    "exposure",
)
CANDIDATE_POSITIONS = {"discrete": [-1.0, 0.0, 1.0], "long_only": [0.0, 1.0]}


@dataclass(frozen=True)
class BacktestConfig:
    """How validation and test backtest the agent (`--model.backtest.*`).

    Args:
        ensemble_checkpoints: test an ensemble of these checkpoints (averaged action
            probabilities) instead of this model.
        ensemble_weighting: uniform, or val_sharpe (weights ∝ each checkpoint's positive
            validation Sharpe).
        random_baselines: random policies backtested alongside, for the random_sharpe row.
        worst_trades: error analysis after test: this many worst trades per asset in reports/.
        bootstrap_samples: block-bootstrap resamples for the test Sharpe's 95% interval.
    """

    ensemble_checkpoints: list[str] | None = None
    ensemble_weighting: Literal["uniform", "val_sharpe"] = "uniform"
    random_baselines: int = 32
    worst_trades: int = 10
    bootstrap_samples: int = 1000


@torch.no_grad()
def backtest_positions(
    market: Tensor,
    members: list[TradingPolicy],
    weights: list[float],
    action_mode: str,
) -> Tensor:
    """Deterministic positions over consecutive decision days, each chosen seeing the position
    the agent holds. market: (days, channels, window, features) → (days,).

    Discrete agents: the trunk runs once over all days, the heads once per day and candidate
    position, and the sequential part is a table lookup. Continuous agents step day by day.
    An ensemble averages action probabilities (or means) with the given weights."""
    weight = torch.tensor(weights, dtype=torch.float32, device=market.device)
    weight = weight / weight.sum()
    modes = [m.training for m in members]
    for m in members:
        m.eval()
    trunks = [torch.cat([m.trunk(chunk) for chunk in market.split(1024)]) for m in members]
    candidates = CANDIDATE_POSITIONS.get(action_mode)
    days = market.shape[0]
    if candidates is not None:
        probabilities = 0.0
        for member, trunk, w in zip(members, trunks, weight):
            per_position = [
                member.heads(trunk, torch.full((days,), held, device=market.device))[0].softmax(-1)
                for held in candidates
            ]
            probabilities = probabilities + w * torch.stack(
                per_position, dim=1
            )  # (days, held, action)
        best = probabilities.argmax(-1).cpu().numpy()
        chosen = np.empty(days, dtype=np.int64)
        held_index = candidates.index(0.0)  # start flat, as simulate() does
        for t in range(days):
            held_index = chosen[t] = best[t, held_index]
        positions = torch.tensor(candidates)[torch.from_numpy(chosen)]
    else:
        held = torch.zeros(1, device=market.device)
        out = []
        for t in range(days):
            mean = sum(
                w * m.heads(tr[t : t + 1], held)[0].squeeze(-1)
                for m, tr, w in zip(members, trunks, weight)
            )
            held = mean.clamp(-1.0, 1.0)
            out.append(held)
        positions = torch.cat(out).cpu()
    for m, mode in zip(members, modes):
        m.train(mode)
    return positions.float()


def load_ensemble(
    paths: list[str],
    build_policy: Callable[[], TradingPolicy],
    device: torch.device,
    weighting: str,
) -> tuple[list[TradingPolicy], list[float]]:
    """Policies of trained checkpoints (loaded with weights_only=True) and their weights."""
    members, sharpes = [], []
    for path in paths:
        try:
            checkpoint = torch.load(path, map_location=device, weights_only=True)
        except Exception as error:  # OSError, pickle.UnpicklingError, RuntimeError, ...
            raise DataError(
                f"{path}: cannot read ensemble checkpoint ({type(error).__name__}: {first_line(error)})"
            ) from None
        state = {
            k.removeprefix("policy."): v
            for k, v in checkpoint.get("state_dict", {}).items()
            if k.startswith("policy.")
        }
        if not state:
            raise DataError(f"{path}: not a trading agent's checkpoint (no policy weights)")
        member = build_policy().to(device)
        try:
            member.load_state_dict(state)
        except RuntimeError as error:
            raise DataError(
                f"{path}: policy does not match this configuration ({first_line(error)})"
            ) from None
        members.append(member)
        sharpes.append(checkpoint.get("val_sharpe") or 0.0)
    return members, ensemble_weights(sharpes, weighting)


def ensemble_weights(val_sharpes: list[float], weighting: str) -> list[float]:
    """uniform: equal; val_sharpe: proportional to each member's positive validation Sharpe
    (equal again when none is positive)."""
    if weighting == "val_sharpe" and any(s > 0 for s in val_sharpes):
        return [max(s, 0.0) for s in val_sharpes]
    return [1.0] * len(val_sharpes)


class Backtester:
    """Backtests policies on the data's splits; computes the baselines once per split."""

    def __init__(self, data: TradingData, config: BacktestConfig) -> None:
        self.data = data
        self.config = config
        self._baselines: dict[str, dict[str, dict[str, float]]] = {}
        self._supervised: RidgeModel | None = None
        self._rule: str | None = None

    @property
    def candidates(self) -> list[float] | None:
        return CANDIDATE_POSITIONS.get(self.data.action_mode)

    def evaluate(
        self,
        split: str,
        members: list[TradingPolicy],
        weights: list[float],
        device: torch.device,
        baselines: bool = True,
        interval: bool = False,
    ) -> tuple[dict[str, float], list[tuple[BacktestAsset, Tensor, Tensor]]]:
        """Backtest `split`: the mean over assets of each figure (and each asset's own when there
        are several), with the baselines' rows; and (asset, positions, net log returns) each."""
        cost, execution = self.data.cost_bps, self.data.execution
        rows, runs = [], []
        for asset in self.data.backtest(split):
            positions = backtest_positions(
                asset.market.to(device), members, weights, self.data.action_mode
            )
            returns = simulate(positions, asset, cost, execution)
            figures = performance(returns, positions)
            row = {k: figures[k] for k in REPORTED}
            if interval:
                low, high = sharpe_interval(returns, samples=self.config.bootstrap_samples)
                row.update(sharpe_ci_low=low, sharpe_ci_high=high)
            if baselines:
                row.update(self.baselines(split)[asset.name])
            rows.append((asset.name, row))
            runs.append((asset, positions, returns))
        metrics = {k: float(np.mean([row[k] for _, row in rows])) for k in rows[0][1]}
        if len(rows) > 1:
            for name, row in rows:
                metrics.update({f"{name}_{k}": v for k, v in row.items() if k in REPORTED})
        return metrics, runs

    # ------------------------------------------------------------------ baselines
    def baselines(self, split: str) -> dict[str, dict[str, float]]:
        """Per asset of `split`: buy-and-hold's figures, random_sharpe, each rule's Sharpe,
        rule_sharpe (the rule validation picked) and supervised_sharpe. They do not depend on
        the agent, so each split is computed once."""
        if split in self._baselines:
            return self._baselines[split]
        cost, execution, mode = self.data.cost_bps, self.data.execution, self.data.action_mode
        rule = self.chosen_rule()
        supervised = self.supervised()
        out = {}
        for asset in self.data.backtest(split):
            hold = torch.ones(len(asset))
            figures = performance(simulate(hold, asset, cost, execution), hold)
            row = {f"buy_and_hold_{k}": figures[k] for k in REPORTED}
            if self.config.random_baselines:
                row["random_sharpe"] = self.random_sharpe(asset)
            for name, positions in rule_positions(asset, mode).items():
                row[f"rule_{name}_sharpe"] = sharpe_of(positions, asset, cost, execution)
            rules = [v for k, v in row.items() if k.startswith("rule_")]
            row["rule_best_sharpe"] = max(rules)  # hindsight: the best rule on this split
            row["rule_sharpe"] = row[f"rule_{rule}_sharpe"]
            signal = supervised.predict(asset.market).float()
            row["supervised_sharpe"] = sharpe_of(
                positions_from_signal(signal, mode), asset, cost, execution
            )
            out[asset.name] = row
        self._baselines[split] = out
        return out

    def random_sharpe(self, asset: BacktestAsset) -> float:
        generator = torch.Generator().manual_seed(0)
        choices = torch.tensor(self.candidates or [-1.0, 1.0])
        draws = torch.randint(
            len(choices), (self.config.random_baselines, len(asset)), generator=generator
        )
        positions = choices[draws]
        returns = simulate(positions, asset, self.data.cost_bps, self.data.execution)
        return float(np.mean([performance(r, p)["sharpe"] for r, p in zip(returns, positions)]))

    def chosen_rule(self) -> str:
        """The rule with the best mean Sharpe over the validation assets."""
        if self._rule is None:
            scores: dict[str, list[float]] = {}
            for asset in self.data.backtest("valid"):
                for name, positions in rule_positions(asset, self.data.action_mode).items():
                    scores.setdefault(name, []).append(
                        sharpe_of(positions, asset, self.data.cost_bps, self.data.execution)
                    )
            self._rule = max(scores, key=lambda name: np.mean(scores[name]))
        return self._rule

    def supervised(self) -> RidgeModel:
        if self._supervised is None:
            self._supervised = supervised_model(
                self.data.backtest("train"),
                self.data.backtest("valid"),
                self.data.cost_bps,
                self.data.execution,
                self.data.action_mode,
            )
        return self._supervised

    # ------------------------------------------------------------------ report
    def report(self, trainer: Trainer, prefix: str, metrics: dict[str, float]) -> str:
        """The backtest table (agent vs every baseline) and a verdict on the agent's edge, as
        `reports/<prefix>-backtest.md`; returns the text (the module prints it)."""
        rows = [
            {
                "strategy": "agent",
                "sharpe": metrics["sharpe"],
                "95% interval": f"{metrics['sharpe_ci_low']:.2f} to {metrics['sharpe_ci_high']:.2f}",
                "total_return": metrics["total_return"],
                "max_drawdown": metrics["max_drawdown"],
                "turnover": metrics["turnover"],
            },
            {
                "strategy": "buy and hold",
                "sharpe": metrics["buy_and_hold_sharpe"],
                "95% interval": "",
                "total_return": metrics["buy_and_hold_total_return"],
                "max_drawdown": metrics["buy_and_hold_max_drawdown"],
                "turnover": metrics["buy_and_hold_turnover"],
            },
        ]
        baselines = [
            k
            for k in metrics
            if k.startswith(("rule_", "random_", "supervised_")) and k.endswith("_sharpe")
        ]
        for key in sorted(baselines):
            name = key.removesuffix("_sharpe").replace("_", " ")
            if key == "rule_best_sharpe":
                name = "best rule on this split (hindsight)"
            if key == "rule_sharpe":
                name = f"rule picked on validation ({self.chosen_rule().replace('_', ' ')})"
            rows.append(
                {
                    "strategy": name,
                    "sharpe": metrics[key],
                    "95% interval": "",
                    "total_return": "",
                    "max_drawdown": "",
                    "turnover": "",
                }  # fmt: skip
            )
        verdict = edge_verdict(metrics)
        text = markdown_table(rows) + "\n\n" + verdict + "\n"
        if self.data.leak_future_return:
            text += "\nLEAKAGE CANARY: the observations held tomorrow's return; these figures are fake.\n"
        log_table(trainer, f"{prefix}/backtest", rows)
        if trainer.is_global_zero:  # the Markdown twin of the table, with the verdict under it
            (Path(trainer.default_root_dir) / "reports" / f"{prefix}-backtest.md").write_text(text)
        return text

    def figures(
        self, trainer: Trainer, prefix: str, runs: list[tuple[BacktestAsset, Tensor, Tensor]]
    ) -> None:
        """Equity curves against buy-and-hold, and the worst trades (error analysis), per asset."""
        for asset, positions, returns in runs:
            hold_positions = torch.ones_like(positions)
            hold = simulate(hold_positions, asset, self.data.cost_bps, self.data.execution)
            title = f"{asset.name}: {prefix} split"
            log_figure(
                trainer,
                f"{prefix}/equity_{asset.name}",
                equity_figure(asset.dates, returns, hold, positions, title),
            )
            worst = sorted(trades(asset.dates, positions, returns), key=lambda t: t["return"])
            worst = worst[: self.config.worst_trades]
            key = f"{prefix}/worst_trades_{asset.name}"
            log_table(trainer, key, [{k: v for k, v in t.items() if k != "_span"} for t in worst])
            title = f"{asset.name}: the {len(worst)} worst trades of the {prefix} split"
            log_figure(trainer, key, worst_trades_figure(asset.dates, asset.close, worst, title))


class BestValidationPolicy(Callback):
    """Every validation epoch's Sharpe, and a copy of the policy with the best one: what a
    ModelCheckpoint(monitor="val/sharpe", mode="max") keeps, without writing files (tests and
    benchmarks that fit in process)."""

    def __init__(self) -> None:
        self.val_sharpes: list[float] = []
        self.state: dict[str, Tensor] | None = None

    def on_validation_end(self, trainer: Trainer, module: LightningModule) -> None:
        sharpe = float(trainer.callback_metrics["val/sharpe"])
        if not self.val_sharpes or sharpe > max(self.val_sharpes):
            self.state = {k: v.detach().clone() for k, v in module.policy.state_dict().items()}
        self.val_sharpes.append(sharpe)


def edge_verdict(metrics: dict[str, float]) -> str:
    """One sentence: is the agent's Sharpe distinguishable from zero, and how does it compare
    with the best rule?"""
    sharpe, low, high = metrics["sharpe"], metrics["sharpe_ci_low"], metrics["sharpe_ci_high"]
    span = f"Sharpe {sharpe:.2f}, 95% interval {low:.2f} to {high:.2f}"
    if metrics.get("turnover", 1.0) == 0.0 and metrics.get("exposure", 1.0) == 0.0:
        return "Verdict: no edge claimed: the agent stays flat."
    if low > 0:
        share = ""
        best = metrics.get("rule_best_sharpe")
        if best is not None and best > 0:
            share = f"; {sharpe / best:.0%} of the best rule's {best:.2f}"
        return f"Verdict: an edge distinguishable from noise ({span}{share})."
    return f"Verdict: no edge distinguishable from noise ({span})."
