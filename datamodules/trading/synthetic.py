"""Planted-edge markets: seeded daily bars whose only tradable edge is the one asked for.

    casebook fit --config configs/ppo_trader.yaml --data.source synthetic --data.signal momentum
    casebook market market.csv --signal reversal --strength 0.2 --noise garch --seed 3

A user judging an agent needs markets where the answer is known: an edge that is there (the
agent should find it) and one that is not (it must not claim one). Each member of the family
plants one, on daily close-to-close log returns r[t] = drift + volatility * x[t] of a
standardized process x (unit variance):

    momentum   x[t] = rho x[t-1] + sqrt(1 - rho^2) e[t]          rho = +strength  (0.05-0.4)
    reversal   the same with rho = -strength
    lead_lag   x[t] = beta y[t-1] + sqrt(1 - beta^2) e[t]         y: a second asset, observed
               alongside (`PriceBars.context`), its own returns unpredictable; beta = strength
    regime     x[t] = strength * m[t] + e[t]                      m = +-1, a hidden Markov drift
               regime of mean length `regime_days`; the down regime is 1.5x as volatile
    none       x[t] = e[t]                                        pure noise: no edge to find

The innovations e are Gaussian, fat-tailed (Student-t with `tail_dof` degrees of freedom,
scaled to unit variance) or volatility-clustered (GARCH(1,1) with unit long-run variance:
h[t] = 1 - alpha - beta + alpha e[t-1]^2 + beta h[t-1]). Bars look like a market's: the open is
not the previous close (an unpredictable overnight gap of `gap` daily volatilities, taken out
of the day's return, so close-to-close returns keep the planted process), high and low lie
around open and close, volume is noisy and rises with the size of the move. Drift is zero
unless asked. The whole of an asset's series comes from one `numpy` generator seeded by `seed`.

`write_market_csv` writes a member as CSV files that `--data.source csv` reads back (a
lead-lag market writes the leader as a second file, for `--data.context_path`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from datamodules.trading.sources import PriceBars

Signal = Literal["momentum", "reversal", "lead_lag", "regime", "none"]
Noise = Literal["gaussian", "student_t", "garch"]
SIGNALS: tuple[str, ...] = get_args(Signal)
NOISES: tuple[str, ...] = get_args(Noise)
# The planted strength of each signal when none is given: a clear but not blatant edge.
DEFAULT_STRENGTH = {"momentum": 0.2, "reversal": 0.2, "lead_lag": 0.3, "regime": 0.2, "none": 0.0}


@dataclass(frozen=True)
class SyntheticMarket:
    """How a planted-edge market is generated (`--data.synthetic.*`).

    Args:
        strength: Size of the planted edge: the AR(1) coefficient's magnitude (momentum,
            reversal), the lead-lag coefficient, or the regime drift in daily volatilities;
            None takes the signal's default (momentum 0.2, reversal 0.2, lead_lag 0.3, regime 0.2).
        noise: Innovations: gaussian, student_t (fat tails) or garch (volatility clustering).
        days: Trading days per asset (business days from `start`).
        assets: Independent assets traded (each with its own leader for lead_lag).
        volatility: Daily volatility of close-to-close log returns.
        drift: Daily drift of log returns (0: no free lunch for buy-and-hold).
        gap: Standard deviation of the overnight gap (open vs previous close), in daily volatilities.
        tail_dof: Degrees of freedom of student_t innovations (more than 2).
        garch_alpha: GARCH(1,1) reaction to the last squared shock.
        garch_beta: GARCH(1,1) persistence of variance.
        regime_days: Mean length of a drift regime, in days (regime only).
        start: First date.
    """

    strength: float | None = None
    noise: Noise = "gaussian"
    days: int = 5031
    assets: int = 1
    volatility: float = 0.01
    drift: float = 0.0
    gap: float = 0.2
    tail_dof: float = 4.0
    garch_alpha: float = 0.08
    garch_beta: float = 0.9
    regime_days: float = 120.0
    start: str = "1999-01-04"

    def __post_init__(self) -> None:
        if self.noise not in NOISES:
            raise ValueError(f"noise must be one of {NOISES}, got {self.noise!r}")
        if self.days < 2:
            raise ValueError(f"synthetic days must be at least 2, got {self.days}")
        if self.assets < 1:
            raise ValueError(f"synthetic assets must be at least 1, got {self.assets}")
        if self.tail_dof <= 2:
            raise ValueError(f"tail_dof must exceed 2 (finite variance), got {self.tail_dof}")
        if not (
            self.garch_alpha >= 0
            and self.garch_beta >= 0
            and self.garch_alpha + self.garch_beta < 1
        ):
            raise ValueError("garch_alpha and garch_beta must be non-negative with a sum below 1")
        if self.regime_days < 1:
            raise ValueError(f"regime_days must be at least 1, got {self.regime_days}")

    def strength_of(self, signal: str) -> float:
        strength = DEFAULT_STRENGTH[signal] if self.strength is None else self.strength
        if signal == "none":
            return 0.0
        if signal in ("momentum", "reversal", "lead_lag") and not 0.0 <= strength < 1.0:
            raise ValueError(f"{signal} strength must be in [0, 1), got {strength}")
        return float(strength)


def innovations(rng: np.random.Generator, days: int, market: SyntheticMarket) -> np.ndarray:
    """(days,) shocks of unit variance: Gaussian, scaled Student-t, or GARCH(1,1)."""
    if market.noise == "student_t":
        dof = market.tail_dof
        return rng.standard_t(dof, days) * np.sqrt((dof - 2.0) / dof)
    e = rng.standard_normal(days)
    if market.noise == "gaussian":
        return e
    alpha, beta = market.garch_alpha, market.garch_beta
    out = np.empty(days)
    variance = 1.0
    for t in range(days):
        out[t] = np.sqrt(variance) * e[t]
        variance = 1.0 - alpha - beta + alpha * out[t] ** 2 + beta * variance
    return out


def ar1(rng_shocks: np.ndarray, rho: float) -> np.ndarray:
    """x[t] = rho x[t-1] + sqrt(1 - rho^2) e[t], started in its stationary distribution."""
    x = np.empty_like(rng_shocks)
    x[0] = rng_shocks[0]
    keep = np.sqrt(1.0 - rho * rho)
    for t in range(1, len(x)):
        x[t] = rho * x[t - 1] + keep * rng_shocks[t]
    return x


def bars_from_returns(
    name: str,
    log_returns: np.ndarray,
    move: np.ndarray,
    rng: np.random.Generator,
    market: SyntheticMarket,
    origin: str,
) -> PriceBars:
    """OHLCV bars whose close-to-close log returns are exactly `log_returns`.

    `move` (standardized size of each day's move) scales the wicks and the volume.
    """
    days = len(log_returns)
    close = 100.0 * np.exp(np.cumsum(log_returns))
    previous_close = np.concatenate([[100.0], close[:-1]])
    gap = market.gap * market.volatility * rng.standard_normal(days)
    open_ = previous_close * np.exp(gap)
    size = np.maximum(np.abs(move), 0.25)
    wick_up, wick_down = np.abs(rng.standard_normal((2, days))) * 0.5 * market.volatility * size
    high = np.maximum(open_, close) * np.exp(wick_up)
    low = np.minimum(open_, close) * np.exp(-wick_down)
    volume = 1e6 * np.exp(0.3 * rng.standard_normal(days) + 0.4 * (np.abs(move) - 0.8))
    dates = pd.bdate_range(market.start, periods=days).as_unit("ns")
    return PriceBars(name, dates, open_, high, low, close, volume, origin=origin)


def synthetic_market(
    signal: Signal, market: SyntheticMarket, seed: int, name: str = "synthetic"
) -> PriceBars:
    """One traded asset of the planted family (with its leader as `context` for lead_lag)."""
    if signal not in SIGNALS:
        raise ValueError(f"signal must be one of {SIGNALS}, got {signal!r}")
    strength = market.strength_of(signal)
    rng = np.random.default_rng(seed)
    days = market.days
    e = innovations(rng, days, market)
    origin = f"synthetic {signal} seed {seed}"
    context: tuple[PriceBars, ...] = ()
    scale = np.ones(days)
    if signal in ("momentum", "reversal"):
        x = ar1(e, strength if signal == "momentum" else -strength)
    elif signal == "lead_lag":
        y = innovations(rng, days, market)
        lagged = np.concatenate([[0.0], y[:-1]])
        x = strength * lagged + np.sqrt(1.0 - strength * strength) * e
        leader_returns = market.drift + market.volatility * y
        context = (bars_from_returns(f"{name}_leader", leader_returns, y, rng, market, origin),)
    elif signal == "regime":
        stay = 1.0 - 1.0 / market.regime_days
        flips = rng.random(days) > stay
        state = np.where(np.cumsum(flips) % 2 == 0, 1.0, -1.0) * rng.choice([-1.0, 1.0])
        scale = np.where(state > 0, 1.0, 1.5)
        x = strength * state + e * scale
    else:
        x = e
    log_returns = market.drift + market.volatility * x
    bars = bars_from_returns(name, log_returns, x / scale, rng, market, origin)
    return dataclasses.replace(bars, context=context)


def synthetic_universe(signal: Signal, market: SyntheticMarket, seed: int) -> list[PriceBars]:
    """`market.assets` independent assets named synthetic (or synthetic0, synthetic1, ...)."""
    names = ["synthetic"] if market.assets == 1 else [f"synthetic{i}" for i in range(market.assets)]
    return [synthetic_market(signal, market, seed * 1009 + i, n) for i, n in enumerate(names)]


def bars_frame(bars: PriceBars) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": bars.dates.strftime("%Y-%m-%d"),
            "open": bars.open,
            "high": bars.high,
            "low": bars.low,
            "close": bars.close,
            "volume": bars.volume,
        }
    )


def write_market_csv(
    path: str | Path, signal: Signal, market: SyntheticMarket | None = None, seed: int = 0
) -> list[Path]:
    """Write one member of the family as CSV (the first asset; a lead-lag market also writes
    its leader beside it as `<stem>_leader.csv`). Returns the files written, traded asset first.

        casebook fit --config configs/ppo_trader.yaml --data.source csv --data.path market.csv
        # lead_lag: add --data.context_path market_leader.csv
    """
    market = market or SyntheticMarket()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bars = synthetic_universe(signal, dataclasses.replace(market, assets=1), seed)[0]
    written = [path]
    bars_frame(bars).to_csv(path, index=False, float_format="%.6f")
    for k, leader in enumerate(bars.context):
        suffix = "_leader" if len(bars.context) == 1 else f"_leader{k}"
        leader_path = path.with_name(f"{path.stem}{suffix}{path.suffix}")
        bars_frame(leader).to_csv(leader_path, index=False, float_format="%.6f")
        written.append(leader_path)
    return written


def main(argv: list[str] | None = None) -> int:
    """`casebook market OUT.csv [--signal ...]`: write a planted-edge market as CSV."""
    parser = argparse.ArgumentParser(
        prog="casebook market",
        description="Write a seeded planted-edge market (datamodules/trading/synthetic.py) as CSV.",
    )
    parser.add_argument(
        "out", help="CSV file to write (a lead_lag leader goes to <stem>_leader.csv)"
    )
    parser.add_argument("--signal", choices=SIGNALS, default="momentum")
    defaults = SyntheticMarket()
    for field in dataclasses.fields(SyntheticMarket):
        if field.name in ("assets",):
            continue
        kind = {"noise": str, "start": str, "days": int}.get(field.name, float)
        choices = NOISES if field.name == "noise" else None
        parser.add_argument(
            f"--{field.name}", type=kind, default=getattr(defaults, field.name), choices=choices
        )
    parser.add_argument("--seed", type=int, default=0)
    args = vars(parser.parse_args(argv))
    signal, out, seed = args.pop("signal"), args.pop("out"), args.pop("seed")
    try:
        market = SyntheticMarket(**args)
        written = write_market_csv(out, signal, market, seed)
    except ValueError as error:
        print(f"casebook: error: {error}", file=sys.stderr)
        return 2
    for file in written:
        print(file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
