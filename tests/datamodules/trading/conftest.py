"""Small, fast trading data (400 synthetic days, 8-day windows, two timeframes) as fixtures."""

import dataclasses

import pytest

from datamodules.trading import MarketDataModule, PriceBars, synthetic_bars

SMALL = dict(
    source="synthetic",
    window=8,
    timeframes=(1, 3),
    volume_lookback=10,
    volatility_bars=2,
    train_end="1999-10-08",  # day 199 of 400
    valid_end="2000-02-25",  # day 299
    episode_length=20,
    num_envs=6,
    synthetic_days=400,
    signal_strength=0.2,
    seed=3,
)


@pytest.fixture
def make_module():
    """make_module(bars=None, **overrides): a set-up MarketDataModule over SMALL synthetic data,
    or over the given list of PriceBars."""

    def make(bars: list[PriceBars] | None = None, **overrides) -> MarketDataModule:
        module = MarketDataModule(**{**SMALL, **overrides})
        if bars is not None:
            module.load_bars = lambda: bars
        module.setup("fit")
        return module

    return make


@pytest.fixture
def bars() -> PriceBars:
    """The SMALL module's synthetic asset."""
    return synthetic_bars("synthetic", days=400, seed=SMALL["seed"] * 1009, signal_strength=0.2)


@pytest.fixture
def changed_after():
    """changed_after(bars, day, factor=1.5): prices and volume after `day` scaled by `factor`."""

    def change(bars: PriceBars, day: int, factor: float = 1.5) -> PriceBars:
        scaled = {}
        for column in ("open", "high", "low", "close", "volume"):
            values = getattr(bars, column).copy()
            values[day + 1 :] *= factor
            scaled[column] = values
        return dataclasses.replace(bars, **scaled)

    return change
