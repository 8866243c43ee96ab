"""Backtest performance: what a trader reads off a strategy's daily net log returns.

All figures are computed from the per-day net log returns that ``datamodules.trading.simulate``
produces (costs included), so the agent and buy-and-hold are judged by the same arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
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


def sharpe_interval(
    log_returns: Tensor,
    level: float = 0.95,
    samples: int = 1000,
    block: int = 21,
    periods_per_year: int = TRADING_DAYS,
    seed: int = 0,
) -> tuple[float, float]:
    """Confidence interval of the annualized Sharpe ratio by the circular block bootstrap
    (Politis & Romano 1992): resample blocks of `block` consecutive days, so volatility
    clustering and serial correlation survive the resampling. log_returns: (days,)."""
    r = log_returns.double()
    days = r.numel()
    if days < 2 or r.std() == 0:
        return 0.0, 0.0
    generator = torch.Generator().manual_seed(seed)
    blocks = -(-days // block)
    starts = torch.randint(days, (samples, blocks), generator=generator)
    index = (starts[:, :, None] + torch.arange(block)).flatten(1)[:, :days] % days
    drawn = r[index]  # (samples, days)
    std = drawn.std(dim=1)
    sharpe = torch.where(std > 0, drawn.mean(dim=1) / std, torch.zeros_like(std))
    sharpe = sharpe * math.sqrt(periods_per_year)
    tail = (1.0 - level) / 2.0
    low, high = torch.quantile(sharpe, torch.tensor([tail, 1.0 - tail], dtype=sharpe.dtype))
    return float(low), float(high)


def deflated_sharpe_ratio(
    log_returns: Tensor, trial_sharpes: list[float], periods_per_year: int = TRADING_DAYS
) -> float:
    """Bailey & López de Prado (2014): the probability that the true Sharpe ratio of the chosen
    strategy exceeds the best one expected from `len(trial_sharpes)` unskilled trials with the
    observed spread of (annualized) Sharpe ratios, given the returns' skew and kurtosis.
    Near 1: unlikely to be luck of the search; near 0.5 or below: indistinguishable from it."""
    r = log_returns.double()
    days = r.numel()
    if days < 3 or r.std() == 0:
        return 0.0
    scale = math.sqrt(periods_per_year)
    sharpe = float(r.mean() / r.std())  # per period
    centred = (r - r.mean()) / r.std()
    skew, kurtosis = float(centred.pow(3).mean()), float(centred.pow(4).mean())
    trials = len(trial_sharpes)
    spread = float(np.std(trial_sharpes, ddof=1)) / scale if trials > 1 else 0.0
    normal = torch.distributions.Normal(0.0, 1.0)
    if trials > 1 and spread > 0:
        euler = 0.5772156649
        expected_max = spread * (
            (1 - euler) * float(normal.icdf(torch.tensor(1 - 1 / trials)))
            + euler * float(normal.icdf(torch.tensor(1 - 1 / (trials * math.e))))
        )
    else:
        expected_max = 0.0
    denominator = math.sqrt(max(1e-12, 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2))
    z = (sharpe - expected_max) * math.sqrt(days - 1) / denominator
    return float(normal.cdf(torch.tensor(z)))


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
