"""Features are causal; normalization is fitted on training decision days only."""

import numpy as np
import pytest
import torch

from datamodules.trading.features import compute_features, feature_lookback

TIMEFRAMES = [1, 5, 21]


@pytest.mark.parametrize("day", [60, 150, 250])
def test_changing_prices_after_day_t_changes_no_feature_at_or_before_t(bars, changed_after, day):
    before = compute_features(bars, TIMEFRAMES, volume_lookback=30, volatility_bars=2)
    after = compute_features(
        changed_after(bars, day), TIMEFRAMES, volume_lookback=30, volatility_bars=2
    )
    np.testing.assert_array_equal(before[: day + 1], after[: day + 1])
    assert not np.allclose(before[day + 1 :], after[day + 1 :], equal_nan=True)


def test_features_are_complete_exactly_from_the_feature_lookback(bars):
    features = compute_features(bars, TIMEFRAMES, volume_lookback=30, volatility_bars=2)
    lookback = feature_lookback(TIMEFRAMES, volume_lookback=30, volatility_bars=2)
    assert np.isnan(features[lookback - 1]).any()
    assert not np.isnan(features[lookback:]).any()


def test_changing_prices_after_day_t_changes_no_observation_at_or_before_t(
    make_module, bars, changed_after
):
    # Day 320 lies in the test split: the normalization (fitted on train) stays the same.
    day = 320
    original = make_module([bars])
    changed = make_module([changed_after(bars, day)])
    assert torch.equal(original.feature_mean, changed.feature_mean)

    [test_original], [test_changed] = original.backtest_data("test"), changed.backtest_data("test")
    upto = int(np.searchsorted(test_original.dates, bars.dates[day], side="right"))
    assert torch.equal(test_original.market[:upto], test_changed.market[:upto])
    assert not torch.equal(test_original.market[upto], test_changed.market[upto])

    # The environment's observations: same seed, same actions, same episodes.
    env_original = original.make_env("test", num_envs=4, seed=1)
    env_changed = changed.make_env("test", num_envs=4, seed=1)
    generator = torch.Generator().manual_seed(0)
    seen = 0
    for _ in range(40):
        market_original, position_original = env_original.observe()
        market_changed, position_changed = env_changed.observe()
        early = torch.as_tensor(env_original.current_dates() <= bars.dates[day].to_datetime64())
        assert torch.equal(market_original[early], market_changed[early])
        assert torch.equal(position_original, position_changed)
        seen += int(early.sum())
        action = torch.randint(0, 3, (4,), generator=generator)
        env_original.step(action)
        env_changed.step(action)
    assert seen > 0


def test_normalization_uses_training_data_only(make_module, bars, changed_after):
    last_train_day = int(np.searchsorted(bars.dates, np.datetime64("1999-10-08"), side="right")) - 1
    original = make_module([bars])
    valid_and_test_changed = make_module([changed_after(bars, last_train_day, factor=3.0)])
    assert torch.equal(original.feature_mean, valid_and_test_changed.feature_mean)
    assert torch.equal(original.feature_std, valid_and_test_changed.feature_std)
    train_changed = make_module([changed_after(bars, last_train_day - 30, factor=3.0)])
    assert not torch.equal(original.feature_std, train_changed.feature_std)
