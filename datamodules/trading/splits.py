"""Which trading days belong to train, valid and test, and which of them an agent may decide on.

A split assigns every day a label (TRAIN, VALID, TEST or UNUSED). Decision day t belongs to split
s when t+1 (the day its order fills and its reward is realized) and every day from t-embargo_days
to t carry label s, and t >= observation_span. With embargo_days >= observation_span no observation
and no reward ever touches a day of another split, whichever order the splits come in.

Three ways to label days (`--data.splits.mode`):

- "date": train up to `train_end`, valid up to `valid_end`, test after.
- "walk_forward": the days up to `valid_end` are cut into folds + 1 equal chunks; fold k trains on
  chunks 0..k and validates on chunk k+1 (expanding window); later chunks are unused. Test is
  still everything after `valid_end`, so the test score is comparable across folds.
- "regime": "dividing the data by profit". The days up to `valid_end` are cut into blocks of
  `block_days`; each block is labelled bear/flat/bull by the tercile of its buy-and-hold log
  return (averaged over assets), and within each regime every round(1 / valid_fraction)-th
  block (in time order) goes to valid, the rest to train, so valid holds the same mix of market
  regimes as train. LEAKAGE CAVEAT: membership is decided from each block's realized return,
  i.e. from the future, and train blocks come after valid blocks, so the agent trains on market
  history that postdates part of its validation data. The embargo keeps observations from
  straddling blocks, but valid scores are optimistic; use this mode to check robustness across
  regimes and judge the agent on the date-split test period.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

from casebook.common.errors import DataError

TRAIN, VALID, TEST, UNUSED = 0, 1, 2, -1
SPLITS = {"train": TRAIN, "valid": VALID, "test": TEST}
SplitMode = Literal["date", "walk_forward", "regime"]
SPLIT_MODES: tuple[str, ...] = get_args(SplitMode)


@dataclass(frozen=True)
class Splits:
    """How days are split (`--data.splits.*`).

    Args:
        mode: date, walk_forward or regime (see splits.py; regime leaks hindsight, read why).
        train_end: Last day of the training split (mode date); None: the day `train_share` of the
            way through the calendar, so a CSV of any date range splits sensibly.
        valid_end: Last day of the validation split; the test split is everything after. None:
            the day `train_share + valid_share` of the way through the calendar.
        train_share: Share of the calendar before train_end when train_end is None.
        valid_share: Share of the calendar between train_end and valid_end when valid_end is None.
        embargo_days: Days at the start of each split whose observations would reach into the
            previous split; None = the observation span (window - 1 + feature lookback), the
            minimum allowed.
        folds: Walk-forward folds (mode walk_forward).
        fold: Which walk-forward fold, 0-based: trains on chunks 0..fold, validates on fold+1.
        regime_block_days: Block length of the regime-stratified split, in trading days.
        regime_valid_share: Share of blocks per regime that go to valid (mode regime).
    """

    mode: SplitMode = "date"
    train_end: str | None = None
    valid_end: str | None = None
    train_share: float = 0.7
    valid_share: float = 0.15
    embargo_days: int | None = None
    folds: int = 4
    fold: int = 0
    regime_block_days: int = 252
    regime_valid_share: float = 0.2

    def __post_init__(self) -> None:
        if self.mode not in SPLIT_MODES:
            raise ValueError(f"splits.mode must be one of {SPLIT_MODES}, got {self.mode!r}")
        if not (
            self.train_share > 0
            and self.valid_share > 0
            and self.train_share + self.valid_share < 1
        ):
            raise ValueError(
                "splits.train_share and valid_share must be positive with a sum below 1"
            )

    def boundaries(self, calendar: pd.DatetimeIndex) -> tuple[pd.Timestamp, pd.Timestamp]:
        """(train_end, valid_end) on this calendar: the given dates, or the shares of it."""

        def at(share: float) -> pd.Timestamp:
            return calendar[max(0, min(len(calendar) - 1, round(share * len(calendar)) - 1))]

        train_end = pd.Timestamp(self.train_end) if self.train_end else at(self.train_share)
        valid_end = (
            pd.Timestamp(self.valid_end)
            if self.valid_end
            else at(self.train_share + self.valid_share)
        )
        if self.mode == "date" and train_end >= valid_end:
            raise DataError(
                f"splits: train_end {train_end.date()} must come before valid_end {valid_end.date()}"
            )
        return train_end, valid_end


def date_labels(
    dates: pd.DatetimeIndex, train_end: pd.Timestamp, valid_end: pd.Timestamp
) -> np.ndarray:
    labels = np.full(len(dates), TEST, dtype=np.int8)
    labels[dates <= valid_end] = VALID
    labels[dates <= train_end] = TRAIN
    return labels


def walk_forward_boundaries(
    calendar: pd.DatetimeIndex, valid_end: pd.Timestamp, folds: int, fold: int
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(last train day, last valid day) of `fold` on the pooled calendar of all assets."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in [0, {folds}), got {fold}")
    pre_test = calendar[calendar <= valid_end]
    if len(pre_test) < folds + 1:
        raise DataError(f"walk-forward: {len(pre_test)} days before valid_end, need {folds + 1}")
    cuts = np.linspace(0, len(pre_test), folds + 2).round().astype(int)
    return pre_test[cuts[fold + 1] - 1], pre_test[cuts[fold + 2] - 1]


def walk_forward_labels(
    dates: pd.DatetimeIndex,
    calendar: pd.DatetimeIndex,
    valid_end: pd.Timestamp,
    folds: int,
    fold: int,
) -> np.ndarray:
    train_last, valid_last = walk_forward_boundaries(calendar, valid_end, folds, fold)
    labels = date_labels(dates, train_last, valid_last)
    labels[(dates > valid_last) & (dates <= valid_end)] = UNUSED
    return labels


def regime_blocks(
    calendar: pd.DatetimeIndex,
    closes: list[pd.Series],
    valid_end: pd.Timestamp,
    block_days: int,
    valid_fraction: float,
) -> pd.Series:
    """Label (TRAIN/VALID) of each pre-test calendar day, by regime-stratified blocks.

    `closes` are the close prices of each asset indexed by date.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    pre_test = calendar[calendar <= valid_end]
    block_of_day = np.arange(len(pre_test)) // block_days
    blocks = block_of_day.max() + 1 if len(pre_test) else 0
    if blocks < 3:
        raise DataError(
            f"regime split: {blocks} blocks of {block_days} days before valid_end, need 3"
        )
    block_return = np.zeros(blocks)
    for close in closes:
        for b in range(blocks):
            days = pre_test[block_of_day == b]
            inside = close[(close.index >= days[0]) & (close.index <= days[-1])]
            if len(inside) >= 2:
                block_return[b] += np.log(inside.iloc[-1] / inside.iloc[0]) / len(closes)
    regime = np.digitize(block_return, np.quantile(block_return, [1 / 3, 2 / 3]))
    block_label = np.full(blocks, TRAIN, dtype=np.int8)
    for r in range(3):
        members = np.flatnonzero(regime == r)
        picks = max(1, round(valid_fraction * len(members))) if len(members) > 1 else 0
        # evenly spaced through time within the regime (the middle one if one)
        chosen = np.floor((np.arange(picks) + 0.5) * len(members) / picks).astype(int)
        block_label[members[np.minimum(chosen, len(members) - 1)]] = VALID
    return pd.Series(block_label[block_of_day], index=pre_test)


def regime_labels(
    dates: pd.DatetimeIndex, blocks: pd.Series, valid_end: pd.Timestamp
) -> np.ndarray:
    labels = np.full(len(dates), TEST, dtype=np.int8)
    pre_test = dates <= valid_end
    labels[pre_test] = blocks.reindex(dates[pre_test]).fillna(UNUSED).to_numpy(dtype=np.int8)
    return labels


def decision_days(labels: np.ndarray, split: int, span: int, embargo_days: int) -> np.ndarray:
    """Days t of `split` whose observation and reward stay inside it (see the module docstring)."""
    days = len(labels)
    inside = (labels == split).astype(np.int64)
    # count of days labelled `split` in [t - embargo_days, t + 1], clipped at the series start
    prefix = np.concatenate([[0], np.cumsum(inside)])
    t = np.arange(days - 1)
    low = np.maximum(t - embargo_days, 0)
    count = prefix[t + 2] - prefix[low]
    ok = (count == t + 2 - low) & (t >= span)
    return t[ok]


def episode_starts(days: np.ndarray, episode_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) decision day of every allowed episode within runs of consecutive `days`.

    In a run of at least `episode_length` days every start that fits a full episode is allowed;
    a shorter run (a short regime block) contributes one episode covering the whole run.
    """
    if len(days) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    firsts, lasts = [], []
    for run in runs(days):
        if len(run) >= episode_length:
            start = run[: len(run) - episode_length + 1]
            firsts.append(start)
            lasts.append(start + episode_length - 1)
        else:
            firsts.append(run[:1])
            lasts.append(run[-1:])
    return np.concatenate(firsts), np.concatenate(lasts)


def runs(days: np.ndarray) -> list[np.ndarray]:
    """Split sorted days into runs of consecutive days."""
    if len(days) == 0:
        return []
    return np.split(days, np.flatnonzero(np.diff(days) != 1) + 1)
