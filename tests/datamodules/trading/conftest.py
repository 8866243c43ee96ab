"""Small, fast trading data (400 synthetic days, 8-day windows, two timeframes) as fixtures."""

import dataclasses

import pytest

from datamodules.trading import (
    MarketDataModule,
    PriceBars,
    Splits,
    SyntheticMarket,
    synthetic_market,
)

SMALL = dict(
    source="synthetic",
    window=8,
    timeframes=(1, 3),
    volume_lookback=10,
    volatility_bars=2,
    splits=Splits(train_end="1999-10-08", valid_end="2000-02-25"),  # days 199 and 299 of 400
    episode_length=20,
    num_envs=6,
    synthetic=SyntheticMarket(days=400, strength=0.2),
    seed=3,
)


def small(**overrides) -> dict:
    """SMALL with overrides; `splits`/`synthetic` overrides are dicts merged into SMALL's."""
    out = dict(SMALL)
    for key in ("splits", "synthetic"):
        if isinstance(overrides.get(key), dict):
            overrides[key] = dataclasses.replace(SMALL[key], **overrides[key])
    out.update(overrides)
    return out


@pytest.fixture
def make_module():
    """make_module(bars=None, **overrides): a set-up MarketDataModule over SMALL synthetic data,
    or over the given list of PriceBars."""

    def make(bars: list[PriceBars] | None = None, **overrides) -> MarketDataModule:
        module = MarketDataModule(**small(**overrides))
        if bars is not None:
            module.load_bars = lambda: bars
        module.setup("fit")
        return module

    return make


@pytest.fixture
def bars() -> PriceBars:
    """The SMALL module's synthetic asset."""
    return synthetic_market("momentum", SMALL["synthetic"], seed=SMALL["seed"] * 1009)


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
