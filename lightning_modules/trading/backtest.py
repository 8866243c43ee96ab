"""Backtest performance: what a trader reads off a strategy's daily net log returns.

All figures are computed from the per-day net log returns that ``datamodules.trading.simulate``
produces (costs included), so the agent and buy-and-hold are judged by the same arithmetic.
"""

from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure
from torch import Tensor

TRADING_DAYS = 252


def performance(
    log_returns: Tensor, positions: Tensor, periods_per_year: int = TRADING_DAYS
) -> dict[str, float]:
    """Total and annualized return, annualized Sharpe and Sortino (risk-free rate 0), max drawdown,
    turnover (mean |position change| per day) and hit rate (share of invested days that made money).

    log_returns, positions: (days,) for one strategy.
    """
    r = log_returns.double()
    days = r.numel()
    mean = r.mean()
    std = r.std() if days > 1 else torch.zeros((), dtype=r.dtype)
    downside = r.clamp(max=0).pow(2).mean().sqrt()
    scale = math.sqrt(periods_per_year)
    equity = torch.cat([torch.zeros(1, dtype=r.dtype), r.cumsum(0)]).exp()
    drawdown = 1.0 - equity / equity.cummax(0).values
    previous = torch.cat([torch.zeros(1, dtype=positions.dtype), positions[:-1]])
    invested = positions != 0
    return {
        "total_return": float(r.sum().exp() - 1.0),
        "annual_return": float((mean * periods_per_year).exp() - 1.0),
        "sharpe": float(mean / std * scale) if std > 0 else 0.0,
        "sortino": float(mean / downside * scale) if downside > 0 else 0.0,
        "max_drawdown": float(drawdown.max()),
        "turnover": float((positions - previous).abs().double().mean()),
        "hit_rate": float((r[invested] > 0).double().mean()) if invested.any() else 0.0,
        "exposure": float(positions.abs().double().mean()),
    }


def equity_figure(
    dates, agent: Tensor, buy_and_hold: Tensor, positions: Tensor, title: str
) -> Figure:
    """Equity curves (agent vs buy-and-hold, growth of 1) with the agent's positions underneath."""
    figure = Figure(figsize=(9, 5))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(dates, agent.double().cumsum(0).exp().numpy(), label="agent", linewidth=1.2)
    top.plot(
        dates,
        buy_and_hold.double().cumsum(0).exp().numpy(),
        label="buy and hold",
        linewidth=1.0,
        alpha=0.8,
    )
    top.set_ylabel("equity (start = 1)")
    top.set_title(title)
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.fill_between(dates, positions.numpy(), step="post", alpha=0.6)
    bottom.set_ylim(-1.1, 1.1)
    bottom.set_ylabel("position")
    bottom.grid(alpha=0.3)
    figure.autofmt_xdate()
    return figure


def trades(dates, positions: Tensor, log_returns: Tensor) -> list[dict]:
    """The strategy's trades: each run of consecutive days holding the same non-zero position.

    A trade's return is the sum of its days' net log returns (the costs of entering it included,
    as `simulate` books them on the day the position changes), reported as a simple return.
    positions, log_returns: (days,) for one strategy; dates: the matching decision days.
    """
    rows, start = [], None
    held = positions.tolist()
    for day in range(len(held) + 1):
        ends = day == len(held) or (start is not None and held[day] != held[start])
        if start is not None and ends:
            net = float(log_returns[start:day].double().sum())
            rows.append(
                {
                    "entry": str(dates[start].date()),
                    "exit": str(dates[day - 1].date()),
                    "side": "long" if held[start] > 0 else "short",
                    "size": abs(held[start]),
                    "days": day - start,
                    "return": math.expm1(net),
                    "_span": (start, day),  # for the figure; dropped from the table
                }
            )
            start = None
        if day < len(held) and start is None and held[day] != 0:
            start = day
    return rows


def worst_trades_figure(dates, close: Tensor, worst: list[dict], title: str) -> Figure:
    """The decision day's close with the worst trades shaded (red: long, purple: short)."""
    figure = Figure(figsize=(9, 3.5))
    axes = figure.subplots()
    axes.plot(dates, close.double().numpy(), linewidth=1.0, color="black")
    for rank, trade in enumerate(worst, 1):
        start, stop = trade["_span"]
        colour = "tab:red" if trade["side"] == "long" else "tab:purple"
        axes.axvspan(dates[start], dates[stop - 1], color=colour, alpha=0.3)
        axes.annotate(str(rank), (dates[start], float(close[start])), fontsize=8)
    axes.set_ylabel("close")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    return figure
