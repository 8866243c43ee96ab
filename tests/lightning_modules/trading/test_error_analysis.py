"""Error analysis of a backtest: the trades, each a run of one held position, with their returns."""

import math

import pandas as pd
import torch

from lightning_modules.trading.backtest import trades


def test_trades_are_runs_of_one_held_position_with_their_net_return():
    dates = pd.bdate_range("2020-01-01", periods=7)
    positions = torch.tensor([0.0, 1.0, 1.0, -1.0, -1.0, 0.0, 1.0])
    log_returns = torch.tensor([0.0, 0.01, -0.03, 0.02, 0.01, 0.0, -0.05])
    rows = trades(dates, positions, log_returns)
    assert [(r["entry"], r["exit"], r["side"], r["days"]) for r in rows] == [
        ("2020-01-02", "2020-01-03", "long", 2),
        ("2020-01-06", "2020-01-07", "short", 2),
        ("2020-01-09", "2020-01-09", "long", 1),  # still open on the last day
    ]
    expected = [math.expm1(-0.02), math.expm1(0.03), math.expm1(-0.05)]
    assert all(math.isclose(r["return"], e, rel_tol=1e-6) for r, e in zip(rows, expected))


def test_a_flat_strategy_has_no_trades():
    dates = pd.bdate_range("2020-01-01", periods=3)
    assert trades(dates, torch.zeros(3), torch.zeros(3)) == []
