"""Splits are disjoint in time, separated by an embargo no observation can cross."""

import numpy as np
import pandas as pd
import pytest
import torch

from datamodules.trading import MarketDataModule, Splits
from datamodules.trading.splits import TRAIN, VALID


@pytest.fixture(scope="module")
def arch_module():
    module = MarketDataModule(
        source=["sp500", "nasdaq"],
        num_envs=8,
        episode_length=64,
        splits=Splits(train_end="2012-12-31", valid_end="2015-12-31"),
    )
    module.setup("fit")
    return module


def test_observation_shape_and_span_are_known_before_any_data_is_loaded(monkeypatch):
    module = MarketDataModule(source="sp500", window=32, timeframes=(1, 5, 21))
    assert module.observation_shape == (3, 32, 6)
    assert module.num_actions == 3
    assert module.table is None
    assert module.embargo_days == module.observation_span == 31 + module.feature_lookback


def test_arch_splits_are_disjoint_in_time_with_the_embargo(arch_module):
    span = arch_module.observation_span
    for asset in ("sp500", "nasdaq"):
        dates = next(b for b in arch_module.bars if b.name == asset).dates
        train = arch_module.split_dates("train")[asset]
        valid = arch_module.split_dates("valid")[asset]
        test = arch_module.split_dates("test")[asset]
        assert train[1] <= pd.Timestamp("2012-12-31") < valid[0]
        assert valid[1] <= pd.Timestamp("2015-12-31") < test[0]
        # the first decision day's whole observation lies after the previous split's last day
        for previous, following in ((train, valid), (valid, test)):
            first = dates.get_loc(following[0])
            assert dates[first - span] > previous[1]
            assert dates.get_loc(previous[1]) == first - span - 1


def test_default_splits_are_shares_of_the_calendar_so_any_date_range_splits(make_module):
    module = make_module(splits={"train_end": None, "valid_end": None}, synthetic={"days": 600})
    calendar = module.bars[0].dates
    assert module.train_end == calendar[round(0.7 * 600) - 1]
    assert module.valid_end == calendar[round(0.85 * 600) - 1]
    for split in ("train", "valid", "test"):
        assert len(module.backtest_data(split)[0]) > 0


def test_embargo_shorter_than_the_observation_span_is_refused():
    module = MarketDataModule(source="sp500", window=32)
    with pytest.raises(ValueError, match="embargo_days=10 is shorter than the observation span"):
        MarketDataModule(source="sp500", window=32, splits=Splits(embargo_days=10))
    MarketDataModule(
        source="sp500", window=32, splits=Splits(embargo_days=module.observation_span + 5)
    )


def test_train_split_never_sees_valid_or_test_dates(arch_module):
    train_end = np.datetime64("2012-12-31")
    span = arch_module.observation_span
    rows = arch_module.decision_rows("train")
    dates = arch_module.table.dates
    assert (dates[rows.numpy() + 1] <= train_end).all()  # fills and rewards
    env = arch_module.train_env
    env.reset()
    for _ in range(80):
        row = env.row.numpy()
        assert (dates[row + 1] <= train_end).all()
        assert (dates[row - span] >= dates[0]).all()
        env.step(torch.randint(0, 3, (env.num_envs,)))
    for item in arch_module.backtest_data("valid") + arch_module.backtest_data("test"):
        assert item.dates[0] > pd.Timestamp(train_end)


def test_pooled_universe_episodes_each_trade_one_asset(arch_module):
    env = arch_module.make_env("train", num_envs=64, seed=0)
    assets = env.current_assets()
    assert set(assets) == {"sp500", "nasdaq"}
    assert [b.name for b in arch_module.backtest_data("test")] == ["sp500", "nasdaq"]


def _observation_labels(module, split):
    """Labels of every day that any decision day of `split` reads or fills on."""
    span = module.observation_span
    out = []
    for labels, days in zip(module.labels, module._days[split], strict=True):
        for t in days:
            out.append(labels[t - span : t + 2])
    return np.concatenate(out)


@pytest.mark.parametrize("fold", [0, 2])
def test_walk_forward_fold_trains_before_it_validates(make_module, fold):
    module = make_module(
        splits={"mode": "walk_forward", "folds": 3, "fold": fold, "valid_end": "2000-06-30"},
        synthetic={"days": 700},
    )
    train, valid = (
        module.split_dates("train")["synthetic"],
        module.split_dates("valid")["synthetic"],
    )
    assert train[1] < valid[0]
    assert (_observation_labels(module, "train") == TRAIN).all()
    assert (_observation_labels(module, "valid") == VALID).all()


def test_regime_split_keeps_every_observation_inside_its_block(make_module):
    module = make_module(
        splits={
            "mode": "regime",
            "regime_block_days": 60,
            "regime_valid_share": 0.34,
            "valid_end": "2001-06-29",
        },
        synthetic={"days": 700},
    )
    assert len(module.backtest_data("valid")) >= 2  # several blocks, one backtest each
    assert (_observation_labels(module, "train") == TRAIN).all()
    assert (_observation_labels(module, "valid") == VALID).all()
    env = module.make_env("valid", num_envs=4, seed=0)
    for _ in range(30):
        labels = module.labels[0][env.row.numpy() + 1]
        assert (labels == VALID).all()
        env.step(torch.ones(4, dtype=torch.long))
