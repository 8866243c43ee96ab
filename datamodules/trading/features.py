"""Causal market features: nothing in the row of day t reads a price or volume after day t.

Channels are timeframes. For a timeframe of k days, the row of day t describes the k-day bar
ending at day t (open of day t-k+1, highest high, lowest low, close of day t, the bar's volume)
against the close before the bar (day t-k):

    open, high, low, close   log(price / close[t-k])
    volume_z                 mean log volume of the bar, z-scored against the last
                             `volume_lookback` days of log volume (days t-volume_lookback+1..t)
    realized_vol             root mean square of daily close-to-close log returns over the last
                             `volatility_bars` * k days

The observation of decision day t stacks the rows of days t-window+1..t for every channel: a
"stack of squares" [channels, window, features]. Bars overlap (stride one day), so every channel
covers the same calendar days and the observation span, and with it the split embargo, stays
short (`observation_span`).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from datamodules.trading.sources import PriceBars

FEATURE_NAMES = ("open", "high", "low", "close", "volume_z", "realized_vol")


def feature_lookback(timeframes: list[int], volume_lookback: int, volatility_bars: int) -> int:
    """Trading days before day t that the features of day t read."""
    longest = max(timeframes)
    return max(longest, volatility_bars * longest, volume_lookback - 1)


def observation_span(
    window: int, timeframes: list[int], volume_lookback: int, volatility_bars: int
) -> int:
    """Trading days before decision day t that its observation reads (window rows + lookback)."""
    return window - 1 + feature_lookback(timeframes, volume_lookback, volatility_bars)


def _rolling(values: np.ndarray, length: int, reduce) -> np.ndarray:
    """reduce(values[t-length+1..t]) at each t; NaN where fewer than `length` values exist."""
    out = np.full(len(values), np.nan)
    if len(values) >= length:
        out[length - 1 :] = reduce(sliding_window_view(values, length), axis=-1)
    return out


def _lagged(values: np.ndarray, lag: int) -> np.ndarray:
    out = np.full(len(values), np.nan)
    if lag < len(values):
        out[lag:] = values[: len(values) - lag]
    return out


def _log_volume(volume: np.ndarray) -> np.ndarray:
    """log(1 + volume) with zero-volume days (data gaps) carried from the last traded day.

    Carrying forward is causal; days before the first traded day stay at log(1) = 0.
    """
    traded = np.where(volume > 0, volume, np.nan)
    index = np.where(~np.isnan(traded), np.arange(len(volume)), 0)
    np.maximum.accumulate(index, out=index)
    carried = traded[index]
    return np.log1p(np.nan_to_num(carried, nan=0.0))


def compute_features(
    bars: PriceBars,
    timeframes: list[int],
    volume_lookback: int = 63,
    volatility_bars: int = 4,
) -> np.ndarray:
    """Raw (unnormalized) features, shape (days, channels, features), NaN until the lookback is full."""
    days = len(bars)
    out = np.full((days, len(timeframes), len(FEATURE_NAMES)), np.nan)
    daily_return = np.log(bars.close / _lagged(bars.close, 1))
    log_volume = _log_volume(bars.volume)
    volume_mean = _rolling(log_volume, volume_lookback, np.mean)
    volume_std = _rolling(log_volume, volume_lookback, np.std)
    for channel, k in enumerate(timeframes):
        reference = _lagged(bars.close, k)
        bar_open = _lagged(bars.open, k - 1)
        bar_high = _rolling(bars.high, k, np.max)
        bar_low = _rolling(bars.low, k, np.min)
        out[:, channel, 0] = np.log(bar_open / reference)
        out[:, channel, 1] = np.log(bar_high / reference)
        out[:, channel, 2] = np.log(bar_low / reference)
        out[:, channel, 3] = np.log(bars.close / reference)
        bar_volume = _rolling(log_volume, k, np.mean)
        flat = ~(volume_std > 1e-6)  # constant (or missing) volume carries no information
        out[:, channel, 4] = np.where(
            flat, 0.0, (bar_volume - volume_mean) / np.where(flat, 1.0, volume_std)
        )
        out[np.isnan(volume_std), channel, 4] = np.nan
        out[:, channel, 5] = np.sqrt(_rolling(daily_return**2, volatility_bars * k, np.mean))
    return out


def fit_normalization(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per (channel, feature) of feature rows (n, channels, features).

    Called with the rows of the training split's decision days only, so valid/test data never
    shape the scaling.
    """
    if len(rows) == 0 or np.isnan(rows).any():
        raise ValueError("normalization needs at least one complete feature row")
    mean = rows.mean(axis=0)
    std = rows.std(axis=0)
    return mean, np.where(std > 1e-12, std, 1.0)
