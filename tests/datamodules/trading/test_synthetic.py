"""The planted-edge family: each member plants exactly the edge it names, on bars that look
like a market's, with the noise asked for; seeded; written to CSV and read back."""

import numpy as np
import pytest
import torch

from datamodules.trading import (
    MarketDataModule,
    SyntheticMarket,
    net_log_returns,
    read_price_csv,
    synthetic_market,
    write_market_csv,
)
from datamodules.trading.synthetic import main as market_command

DAYS = 6000


def returns(bars) -> np.ndarray:
    return np.diff(np.log(bars.close))


def autocorrelation(x: np.ndarray, lag: int = 1) -> float:
    return float(np.corrcoef(x[:-lag], x[lag:])[0, 1])


def rule_net_returns(bars, signal: np.ndarray, cost_bps: float = 5.0) -> torch.Tensor:
    """Hold sign(signal[t]) from the open of t+1 (signal known at the close of t), with costs."""
    gap = torch.as_tensor(np.log(bars.open[1:] / bars.close[:-1]))
    intraday = torch.as_tensor(np.log(bars.close[1:] / bars.open[1:]))
    position = torch.as_tensor(np.sign(signal[:-1]))
    previous = torch.cat([torch.zeros(1, dtype=position.dtype), position[:-1]])
    return net_log_returns(previous, position, gap, intraday, cost_bps)


def t_stat(x: torch.Tensor) -> float:
    return float(x.mean() / x.std() * len(x) ** 0.5)


def test_each_member_is_deterministic_per_seed():
    market = SyntheticMarket(days=300)
    for signal in ("momentum", "reversal", "lead_lag", "regime", "none"):
        first, again = synthetic_market(signal, market, 7), synthetic_market(signal, market, 7)
        np.testing.assert_array_equal(first.close, again.close)
        np.testing.assert_array_equal(first.volume, again.volume)
        assert not np.allclose(first.close, synthetic_market(signal, market, 8).close)


@pytest.mark.parametrize("strength", [0.1, 0.3])
def test_momentum_and_reversal_plant_the_ar1_coefficient_on_close_to_close_returns(strength):
    market = SyntheticMarket(days=DAYS, strength=strength)
    assert autocorrelation(returns(synthetic_market("momentum", market, 0))) == pytest.approx(
        strength, abs=0.04
    )
    assert autocorrelation(returns(synthetic_market("reversal", market, 0))) == pytest.approx(
        -strength, abs=0.04
    )


def test_lead_lag_plants_the_leaders_yesterday_in_todays_return_and_nothing_else():
    bars = synthetic_market("lead_lag", SyntheticMarket(days=DAYS, strength=0.3), 1)
    [leader] = bars.context
    np.testing.assert_array_equal(leader.dates, bars.dates)
    target, lead = returns(bars), returns(leader)
    assert np.corrcoef(lead[:-1], target[1:])[0, 1] == pytest.approx(0.3, abs=0.04)
    assert abs(autocorrelation(target)) < 0.04  # its own past says nothing
    assert abs(autocorrelation(lead)) < 0.04


def test_regime_drift_is_tradable_by_the_trend_and_none_is_not():
    market = SyntheticMarket(days=DAYS)
    regime = synthetic_market("regime", market, 2)
    trend = np.full(len(regime), np.nan)
    trend[21:] = np.log(regime.close[21:] / regime.close[:-21])
    assert t_stat(rule_net_returns(regime, np.nan_to_num(trend))) > 3
    noise = synthetic_market("none", market, 2)
    for signal in (returns(noise), np.log(noise.close / noise.open)[1:]):
        follow = rule_net_returns(noise, np.concatenate([[0.0], signal]), cost_bps=0.0)
        assert abs(t_stat(follow)) < 3  # before costs; after them, trading noise loses
    assert abs(autocorrelation(returns(noise))) < 0.04


def test_a_planted_momentum_edge_survives_next_open_fills_and_costs():
    bars = synthetic_market("momentum", SyntheticMarket(days=DAYS, strength=0.3), 3)
    follow = rule_net_returns(bars, np.concatenate([[0.0], returns(bars)]))
    sharpe = float(follow.mean() / follow.std()) * 252**0.5
    assert sharpe > 2.0  # about 2.9 after 5 bp, as a user measures it


@pytest.mark.parametrize("signal", ["momentum", "regime", "none"])
def test_bars_look_like_a_markets(signal):
    bars = synthetic_market(signal, SyntheticMarket(days=2000), 4)
    assert (bars.open[1:] != bars.close[:-1]).all()  # an overnight gap every day
    assert (bars.high >= np.maximum(bars.open, bars.close)).all()
    assert (bars.low <= np.minimum(bars.open, bars.close)).all()
    assert (bars.volume > 0).all() and bars.volume.std() / bars.volume.mean() > 0.1
    # volume rises with the size of the move
    assert np.corrcoef(np.abs(returns(bars)), np.log(bars.volume[1:]))[0, 1] > 0.1
    if signal != "regime":  # zero drift unless asked
        assert abs(t_stat(torch.as_tensor(returns(bars)))) < 3
    drifting = synthetic_market(signal, SyntheticMarket(days=2000, drift=0.002), 4)
    assert t_stat(torch.as_tensor(returns(drifting))) > 3


def test_noise_options_give_fat_tails_and_volatility_clustering():
    def kurtosis(x):
        z = (x - x.mean()) / x.std()
        return float((z**4).mean())

    gaussian, fat, clustered = (
        returns(synthetic_market("none", SyntheticMarket(days=DAYS, noise=noise), 5))
        for noise in ("gaussian", "student_t", "garch")
    )
    assert kurtosis(gaussian) == pytest.approx(3.0, abs=0.4)
    assert kurtosis(fat) > 5
    assert autocorrelation(clustered**2) > 0.1
    assert abs(autocorrelation(gaussian**2)) < 0.05
    for series in (gaussian, fat, clustered):  # each keeps the asked volatility
        assert series.std() == pytest.approx(0.01, rel=0.15)


def test_bad_generator_settings_are_refused():
    for bad in ({"noise": "cauchy"}, {"tail_dof": 2.0}, {"garch_alpha": 0.5, "garch_beta": 0.6}):
        with pytest.raises(ValueError):
            SyntheticMarket(**bad)
    with pytest.raises(ValueError, match="momentum strength"):
        synthetic_market("momentum", SyntheticMarket(strength=1.2), 0)


def test_written_csv_reads_back_as_the_same_bars(tmp_path):
    [path] = write_market_csv(tmp_path / "m.csv", "momentum", SyntheticMarket(days=300), seed=2)
    bars, again = (
        synthetic_market("momentum", SyntheticMarket(days=300), 2 * 1009),
        read_price_csv(path),
    )
    np.testing.assert_allclose(again.close, bars.close, rtol=1e-5)
    assert list(again.dates) == list(bars.dates)


def test_lead_lag_csv_and_its_leader_give_the_synthetic_source_s_observations(tmp_path):
    market = SyntheticMarket(days=500)
    target, leader = write_market_csv(tmp_path / "ll.csv", "lead_lag", market, seed=0)
    assert leader.name == "ll_leader.csv"
    common = dict(window=8, timeframes=(1, 3), volume_lookback=10, volatility_bars=2, num_envs=2)
    from_csv = MarketDataModule(source="csv", path=str(target), context_path=str(leader), **common)
    built = MarketDataModule(source="synthetic", signal="lead_lag", synthetic=market, **common)
    for module in (from_csv, built):
        module.setup("fit")
    assert from_csv.observation_shape == built.observation_shape == (4, 8, 6)
    torch.testing.assert_close(
        from_csv.backtest_data("test")[0].market,
        built.backtest_data("test")[0].market,
        atol=1e-3,
        rtol=1e-3,
    )
    assert from_csv.predictor_names == ["return_1d", "return_21d", "leader_return_1d"]


def test_market_command_writes_a_member_and_refuses_bad_settings(tmp_path, capsys):
    assert market_command([str(tmp_path / "r.csv"), "--signal", "reversal", "--days", "200"]) == 0
    assert read_price_csv(tmp_path / "r.csv").close.shape == (200,)
    assert (
        market_command([str(tmp_path / "x.csv"), "--tail_dof", "1.5", "--noise", "student_t"]) == 2
    )
    assert capsys.readouterr().err.strip().startswith("casebook: error: tail_dof must exceed 2")


def test_casebook_market_writes_the_csv_that_casebook_fit_reads(cli_env, tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "casebook", "market", str(tmp_path / "m.csv"), "--signal", "lead_lag",
         "--days", "300", "--seed", "4"],
        env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(tmp_path / "m.csv"), str(tmp_path / "m_leader.csv")]
    assert len(read_price_csv(tmp_path / "m_leader.csv")) == 300
