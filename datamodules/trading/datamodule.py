"""MarketDataModule: daily OHLCV bars -> causal features -> splits -> trading environments.

    casebook fit --config configs/ppo_trader.yaml --data.source '[sp500, nasdaq]'
    casebook fit --config configs/ppo_trader.yaml --data.source synthetic --data.signal reversal

The training "data" is an environment, not a dataset: `train_env` (a `BatchedTradingEnv`) is built
in `setup("fit")` and the LightningModule collects its rollouts from it; `train_dataloader` only
paces the loop with `iterations_per_epoch` dummy items (one rollout + update each).
`val_dataloader`/`test_dataloader` yield one dummy item: the module backtests the whole split,
from `backtest_data(split)` and `simulate`, in one step. A trading LightningModule receives all
of this as one typed `TradingData` (`trading_data()`), in its `setup`.

Several sources (e.g. [sp500, nasdaq]) form a pooled universe: every environment episode trades
one asset, drawn uniformly over all (asset, start day) pairs of the split; normalization
statistics are shared and fitted on the training decision days of all assets; backtests run
per asset. Series observed but not traded (`context_path`, a lead-lag market's leader) add
channels to each traded asset's observation, aligned by date (the last bar at or before it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, IterableDataset

from casebook.common.distributed import gather_from_ranks
from casebook.common.errors import DataError
from datamodules.hparams import from_plain, plain_hyperparameters
from datamodules.resume import ResumableDataLoader
from datamodules.trading.env import (
    ActionMode,
    BacktestAsset,
    BatchedTradingEnv,
    Execution,
    MarketTable,
    Reward,
    gather_market,
    num_actions_for,
)
from datamodules.trading.features import (
    FEATURE_NAMES,
    compute_features,
    feature_lookback,
    fit_normalization,
)
from datamodules.trading.sources import (
    ARCH_SOURCES,
    PriceBars,
    load_arch,
    read_price_csv,
)
from datamodules.trading.splits import (
    SPLITS,
    Splits,
    date_labels,
    decision_days,
    episode_starts,
    regime_blocks,
    regime_labels,
    runs,
    walk_forward_labels,
)
from datamodules.trading.synthetic import Signal, SyntheticMarket, synthetic_universe

Source = Literal["sp500", "nasdaq", "csv", "synthetic"]
SOURCES: tuple[str, ...] = get_args(Source)
TREND_DAYS = 21  # the trend rule's look-back: the sign of the last month's return
CANARY_WARNING = (
    "LEAKAGE CANARY ON: --data.leak_future_return appends TOMORROW's return to every "
    "observation. Any Sharpe this run reports is fake; it only proves the learning machinery."
)


@dataclass
class TradingData:
    """What a trading LightningModule needs from its data, handed over once in its `setup`."""

    train_env: BatchedTradingEnv | None  # None outside fit
    backtest: Callable[[str], list[BacktestAsset]]  # split -> one backtest per asset (run)
    cost_bps: float
    execution: Execution
    action_mode: ActionMode
    real_data: bool  # sp500/nasdaq/csv: results mean something about a real market
    leak_future_return: bool  # the leakage canary is on
    return_std: float  # std of the training split's next-day returns: the natural reward unit


class _Paces(IterableDataset):
    """`length` dummy items. Iterable, so Lightning adds no DistributedSampler: every DDP rank
    runs all `length` iterations on its own environments."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(torch.arange(self.length))


def align_to(dates: pd.DatetimeIndex, other: PriceBars, rows: np.ndarray) -> np.ndarray:
    """`rows` (one per day of `other`) re-indexed to `dates`: each date takes the row of the last
    day of `other` at or before it (causal), NaN before `other` starts."""
    position = np.searchsorted(other.dates.values, dates.values, side="right") - 1
    out = np.full((len(dates), *rows.shape[1:]), np.nan)
    known = position >= 0
    out[known] = rows[position[known]]
    return out


class MarketDataModule(L.LightningDataModule):
    """Daily market data as trading environments (train) and per-asset backtests (valid/test).

    Observation: [channels, window, features] where channels are the bar `timeframes` (1-, 5-
    and 21-day bars ending on each day), for the traded asset and then for each series observed
    alongside it, and features are open/high/low/close log returns against the close before the
    bar, a volume z-score and realized volatility (features.py), each normalized with training
    statistics and clipped to +-`observation_clip`; plus the position.

    Args:
        source: sp500 | nasdaq (arch's daily OHLCV 1999-2018) | csv | synthetic (the
            planted-edge family, synthetic.py), or a list of them for a pooled universe.
        path: CSV file(s) for source csv: columns date, open, high, low, close, volume, any
            case and order; one traded asset per file.
        context_path: CSV file(s) of series observed alongside every traded asset but not
            traded (e.g. a leading index); their bars join each observation by date.
        signal: synthetic only: the planted edge: momentum, reversal, lead_lag, regime, none.
        synthetic: synthetic only: strength, noise, length, assets... of the generated market.
        splits: how days are split into train/valid/test (fractions of the calendar by default).
        window: Trading days per observation (rows of each square).
        timeframes: Bar lengths in days, one observation channel each.
        volume_lookback: Days of log volume the volume z-score is measured against.
        volatility_bars: Realized volatility of channel k spans volatility_bars * k days.
        episode_length: Decision days per environment episode.
        num_envs: Parallel environments in `train_env`.
        action_mode: discrete (short/flat/long), long_only (flat/long) or continuous.
        cost_bps: Transaction cost per unit of position change, in basis points.
        reward: log_return (net log P&L) or differential_sharpe (Moody & Saffell 1998).
        execution: next_open (fill at the next open) or close (fill at today's close).
        dsr_eta: Adaptation rate of the differential Sharpe ratio's moving moments.
        observation_clip: Normalized features are clipped to +-this.
        iterations_per_epoch: Rollout+update iterations per training epoch.
        seed: Seed of the environments (each DDP rank adds its rank) and synthetic data.
        leak_future_return: LEAKAGE CANARY: append tomorrow's return to every observation. An
            agent must then reach an enormous Sharpe quickly, which proves the learning
            machinery works; warned loudly, and `casebook test` refuses it on real data.
    """

    def __init__(
        self,
        source: Source | list[Source] = "sp500",
        path: str | list[str] | None = None,
        context_path: str | list[str] | None = None,
        signal: Signal = "momentum",
        synthetic: SyntheticMarket = SyntheticMarket(),
        splits: Splits = Splits(),
        window: int = 32,
        timeframes: tuple[int, ...] = (1, 5, 21),
        volume_lookback: int = 63,
        volatility_bars: int = 4,
        episode_length: int = 256,
        num_envs: int = 64,
        action_mode: ActionMode = "discrete",
        cost_bps: float = 5.0,
        reward: Reward = "log_return",
        execution: Execution = "next_open",
        dsr_eta: float = 0.01,
        observation_clip: float = 10.0,
        iterations_per_epoch: int = 20,
        seed: int = 0,
        leak_future_return: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        plain_hyperparameters(self)  # checkpoints stay loadable with weights_only=True
        splits = from_plain(splits, Splits)
        synthetic = from_plain(synthetic, SyntheticMarket)
        self.sources = [source] if isinstance(source, str) else list(source)
        self.paths = _as_list(path)
        self.context_paths = _as_list(context_path)
        for name in self.sources:
            if name not in SOURCES:
                raise ValueError(f"unknown source {name!r}; expected one of {SOURCES}")
        if "csv" in self.sources and not self.paths:
            raise ValueError("source 'csv' needs --data.path (one file or a list)")
        if window < 1 or episode_length < 1 or num_envs < 1 or min(timeframes) < 1:
            raise ValueError("window, episode_length, num_envs and timeframes must be positive")
        self.window = window
        self.timeframes = [int(k) for k in timeframes]
        self.volume_lookback = volume_lookback
        self.volatility_bars = volatility_bars
        self.feature_lookback = feature_lookback(self.timeframes, volume_lookback, volatility_bars)
        # Days before decision day t that its observation reads.
        self.observation_span = window - 1 + self.feature_lookback
        embargo_days = splits.embargo_days
        if embargo_days is None:
            embargo_days = self.observation_span
        if embargo_days < self.observation_span:
            raise ValueError(
                f"splits.embargo_days={embargo_days} is shorter than the observation span of "
                f"{self.observation_span} days (window {window} - 1 + feature lookback "
                f"{self.feature_lookback}): observations would straddle two splits"
            )
        if splits.mode == "regime" and splits.regime_block_days <= embargo_days + 1:
            raise ValueError(
                f"splits.regime_block_days={splits.regime_block_days} leaves no decision day "
                f"after the embargo of {embargo_days} days; use more than {embargo_days + 1}"
            )
        self.embargo_days = embargo_days
        self.splits = splits
        self.signal = signal
        self.synthetic = synthetic
        self.episode_length = episode_length
        self.num_envs = num_envs
        self.action_mode = action_mode
        self.num_actions = num_actions_for(action_mode)
        self.cost_bps = cost_bps
        self.reward = reward
        self.execution = execution
        self.dsr_eta = dsr_eta
        self.observation_clip = observation_clip
        self.iterations_per_epoch = iterations_per_epoch
        self.seed = seed
        self.leak_future_return = leak_future_return
        # Series observed alongside each traded asset: the CSV context, or a lead-lag leader.
        self.num_context = len(self.context_paths) + (
            1 if "synthetic" in self.sources and signal == "lead_lag" else 0
        )
        if self.num_context and len(set(self.sources)) > 1 and "synthetic" in self.sources:
            raise ValueError("a lead_lag synthetic market cannot be pooled with other sources")
        self.observation_shape: tuple[int, int, int] = (
            len(self.timeframes) * (1 + self.num_context),
            window,
            len(FEATURE_NAMES) + (1 if leak_future_return else 0),
        )
        self.feature_names = FEATURE_NAMES + (("future_return",) if leak_future_return else ())
        self.bars: list[PriceBars] | None = None
        self.table: MarketTable | None = None
        self.train_env: BatchedTradingEnv | None = None
        self._pending_env_state: dict | None = None
        if leak_future_return:
            rank_zero_warn(CANARY_WARNING)

    @property
    def real_data(self) -> bool:
        """Any source other than the synthetic family: a real market's (or a user's) bars."""
        return any(name != "synthetic" for name in self.sources)

    # ----------------------------------------------------------------------------- data
    def load_bars(self) -> list[PriceBars]:
        """Every traded asset of every source, with unique names and its context series."""
        bars: list[PriceBars] = []
        context = tuple(read_price_csv(p, traded=False) for p in self.context_paths)
        for name in self.sources:
            if name in ARCH_SOURCES:
                bars.append(load_arch(name))
            elif name == "csv":
                bars.extend(read_price_csv(p, execution=self.execution) for p in self.paths)
            else:
                bars.extend(synthetic_universe(self.signal, self.synthetic, self.seed))
        seen: dict[str, int] = {}
        unique = []
        for b in bars:
            seen[b.name] = seen.get(b.name, 0) + 1
            name = b.name if seen[b.name] == 1 else f"{b.name}_{seen[b.name]}"
            unique.append(dataclasses.replace(b, name=name, context=b.context + context))
        return unique

    def split_labels(self, bars: list[PriceBars]) -> list[np.ndarray]:
        """TRAIN/VALID/TEST/UNUSED label of every day of every asset (see splits.py)."""
        splits = self.splits
        calendar = pd.DatetimeIndex(np.unique(np.concatenate([b.dates.values for b in bars])))
        self.train_end, self.valid_end = splits.boundaries(calendar)
        if splits.mode == "date":
            return [date_labels(b.dates, self.train_end, self.valid_end) for b in bars]
        if splits.mode == "walk_forward":
            return [
                walk_forward_labels(b.dates, calendar, self.valid_end, splits.folds, splits.fold)
                for b in bars
            ]
        closes = [pd.Series(b.close, index=b.dates) for b in bars]
        blocks = regime_blocks(
            calendar,
            closes,
            self.valid_end,
            splits.regime_block_days,
            splits.regime_valid_share,
        )
        return [regime_labels(b.dates, blocks, self.valid_end) for b in bars]

    def asset_features(self, bars: PriceBars) -> np.ndarray:
        """Raw features (days, channels, features) of a traded asset: its own timeframes, then
        each context series' aligned by date, then (canary only) tomorrow's return."""
        args = (self.timeframes, self.volume_lookback, self.volatility_bars)
        parts = [compute_features(bars, *args)]
        for other in bars.context:
            parts.append(align_to(bars.dates, other, compute_features(other, *args)))
        features = np.concatenate(parts, axis=1)
        if self.leak_future_return:
            future = np.zeros(len(bars))
            future[:-1] = np.log(bars.close[1:] / bars.close[:-1])
            column = np.broadcast_to(future[:, None, None], (*features.shape[:2], 1))
            features = np.concatenate([features, column], axis=2)
        return features

    def asset_predictors(self, bars: PriceBars) -> dict[str, np.ndarray]:
        """Raw causal predictors of each day, known at its close (the rule baselines' inputs)."""
        log_close = np.log(bars.close)
        out = {
            "return_1d": _change(log_close, 1),
            f"return_{TREND_DAYS}d": _change(log_close, TREND_DAYS),
        }
        for k, other in enumerate(bars.context):
            name = "leader" if len(bars.context) == 1 else f"context{k}"
            out[f"{name}_return_1d"] = align_to(bars.dates, other, _change(np.log(other.close), 1))
        return out

    def prepare_table(self) -> None:
        """Load, featurize, split and normalize; idempotent."""
        if self.table is not None:
            return
        bars = self.load_bars()
        for b in bars:
            if len(b) < self.observation_span + 2:
                raise DataError(
                    f"{b.origin or b.name}: {len(b)} trading days, fewer than the "
                    f"{self.observation_span + 2} one decision needs (observation span "
                    f"{self.observation_span} days + the fill day)"
                )
            for other in b.context:
                if other.dates[0] > b.dates[self.observation_span]:
                    raise DataError(
                        f"{other.origin or other.name}: starts {other.dates[0].date()}, after "
                        f"{b.name}'s first decision day; context series must cover the traded ones"
                    )
        labels = self.split_labels(bars)
        raw = [self.asset_features(b) for b in bars]
        self._days = {
            split: [
                decision_days(lab, code, self.observation_span, self.embargo_days) for lab in labels
            ]
            for split, code in SPLITS.items()
        }
        train_rows = np.concatenate([f[d] for f, d in zip(raw, self._days["train"], strict=True)])
        if len(train_rows) == 0:
            raise DataError(
                f"{', '.join(b.name for b in bars)}: no training decision days "
                f"(split mode {self.splits.mode}, train_end {self.train_end.date()}; "
                f"each split needs more than {self.observation_span + 1} trading days)"
            )
        if np.isnan(train_rows).any():
            raise DataError(
                f"{', '.join(b.name for b in bars)}: a context series has no bar before some "
                "training decision day; give context series that start earlier"
            )
        mean, std = fit_normalization(train_rows)
        self.feature_mean = torch.as_tensor(mean, dtype=torch.float32)  # (channels, features)
        self.feature_std = torch.as_tensor(std, dtype=torch.float32)
        clip = self.observation_clip
        # Rows before the lookback are NaN; no decision day's observation reaches them.
        features = [np.nan_to_num(np.clip((f - mean) / std, -clip, clip), nan=0.0) for f in raw]
        gap, intraday = [], []
        for b in bars:
            g = np.zeros(len(b))
            g[1:] = np.log(b.open[1:] / b.close[:-1])
            gap.append(g)
            intraday.append(np.log(b.close / b.open))
        predictors = [self.asset_predictors(b) for b in bars]
        self.predictor_names = list(predictors[0])
        if any(list(p) != self.predictor_names for p in predictors):
            raise DataError("every traded asset needs the same context series")
        self._offsets = np.cumsum([0] + [len(b) for b in bars])[:-1]
        self.bars = bars
        self.labels = labels
        self._backtest_cache: dict[str, list[BacktestAsset]] = {}
        self._predictors = torch.as_tensor(
            np.concatenate([np.stack(list(p.values()), axis=1) for p in predictors]),
            dtype=torch.float32,
        )  # (rows, predictors)
        self.table = MarketTable(
            features=torch.as_tensor(np.concatenate(features), dtype=torch.float32),
            gap=torch.as_tensor(np.concatenate(gap), dtype=torch.float32),
            intraday=torch.as_tensor(np.concatenate(intraday), dtype=torch.float32),
            asset=np.concatenate([np.full(len(b), i) for i, b in enumerate(bars)]),
            dates=np.concatenate([b.dates.values for b in bars]),
            asset_names=[b.name for b in bars],
        )
        # Typical squared daily return of the training period: the DSR's initial variance.
        next_rows = self.decision_rows("train") + 1
        daily = self.table.gap[next_rows] + self.table.intraday[next_rows]
        self.dsr_initial_variance = float(daily.double().pow(2).mean())
        self.return_std = float(daily.double().std())

    def decision_rows(self, split: str) -> torch.Tensor:
        """Table rows of all decision days of `split`, all assets."""
        self._check_split(split)
        return torch.as_tensor(
            np.concatenate([o + d for o, d in zip(self._offsets, self._days[split], strict=True)]),
            dtype=torch.long,
        )

    def split_dates(self, split: str) -> dict[str, tuple[pd.Timestamp, pd.Timestamp] | None]:
        """Per asset: (first decision day, last day a reward is realized), None if empty."""
        self._check_split(split)
        out = {}
        for b, days in zip(self.bars, self._days[split], strict=True):
            out[b.name] = (b.dates[days[0]], b.dates[days[-1] + 1]) if len(days) else None
        return out

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
        self.prepare_table()

    # ----------------------------------------------------------------------------- Lightning
    def check_prerequisites(self, stage: str) -> None:
        """Called by the CLI before any logger starts: the bars are read and checked now (one line
        naming a missing or bad file), and `setup` reuses the table."""
        self.prepare_table()

    def setup(self, stage: str | None = None) -> None:
        self.prepare_table()
        if stage in ("fit", None) and self.train_env is None:
            self.train_env = self.make_env("train", seed=self.seed + self._rank())
            if self._pending_env_state is not None:
                self.load_state_dict(self._pending_env_state)

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    def make_env(
        self, split: str = "train", num_envs: int | None = None, seed: int | None = None
    ) -> BatchedTradingEnv:
        """A fresh CPU environment over `split` (`.to(device)` to move it)."""
        self._check_split(split)
        firsts, lasts = [], []
        for offset, days in zip(self._offsets, self._days[split], strict=True):
            first, last = episode_starts(days, self.episode_length)
            firsts.append(offset + first)
            lasts.append(offset + last)
        firsts, lasts = np.concatenate(firsts), np.concatenate(lasts)
        if len(firsts) == 0:
            raise DataError(self._describe_empty(split))
        return BatchedTradingEnv(
            self.table,
            torch.as_tensor(firsts),
            torch.as_tensor(lasts),
            window=self.window,
            num_envs=self.num_envs if num_envs is None else num_envs,
            action_mode=self.action_mode,
            cost_bps=self.cost_bps,
            reward=self.reward,
            execution=self.execution,
            dsr_eta=self.dsr_eta,
            dsr_initial_variance=self.dsr_initial_variance,
            observation_bound=self.observation_clip,
            seed=self.seed if seed is None else seed,
        )

    def trading_data(self) -> TradingData:
        """Everything a trading LightningModule reads from its data, in one typed object."""
        self.prepare_table()
        return TradingData(
            train_env=self.train_env,
            backtest=self.backtest_data,
            cost_bps=self.cost_bps,
            execution=self.execution,
            action_mode=self.action_mode,
            real_data=self.real_data,
            leak_future_return=self.leak_future_return,
            return_std=self.return_std,
        )

    def make_gym_env(self, split: str = "train", seed: int | None = None):
        """A one-episode Gymnasium view (`TradingGymEnv`) of `split`."""
        from datamodules.trading.gym_env import TradingGymEnv

        return TradingGymEnv(self.make_env(split, num_envs=1, seed=seed))

    def _describe_empty(self, split: str) -> str:
        return (
            f"{', '.join(self.table.asset_names)}: split {split!r} has no decision days "
            f"({self.splits.mode} split, train_end {self.train_end.date()}, valid_end "
            f"{self.valid_end.date()}, embargo {self.embargo_days} days)"
        )

    def backtest_data(self, split: str) -> list[BacktestAsset]:
        """Per asset (per run of consecutive decision days, if a split has gaps): every decision
        day of `split` with its normalized observation and next-day prices, for `simulate`.

        Names are the asset's, suffixed "#k" for the k-th run when there are several.
        """
        self._check_split(split)
        if (
            split in self._backtest_cache
        ):  # the table is fixed once prepared; validation asks every epoch
            return self._backtest_cache[split]
        out = []
        for b, offset, days in zip(self.bars, self._offsets, self._days[split], strict=True):
            pieces = runs(days)
            for k, run in enumerate(pieces):
                rows = torch.as_tensor(offset + run, dtype=torch.long)
                out.append(
                    BacktestAsset(
                        name=b.name if len(pieces) == 1 else f"{b.name}#{k}",
                        dates=b.dates[run],
                        market=gather_market(self.table.features, rows, self.window),
                        next_gap=self.table.gap[rows + 1],
                        next_intraday=self.table.intraday[rows + 1],
                        close=torch.as_tensor(b.close[run], dtype=torch.float32),
                        predictors={
                            name: self._predictors[rows, k]
                            for k, name in enumerate(self.predictor_names)
                        },
                    )
                )
        if not out:
            raise DataError(self._describe_empty(split))
        self._backtest_cache[split] = out
        return out

    # ----------------------------------------------------------------------------- casebook doctor
    def split_keys(self) -> dict[str, dict[str, set[str]]]:
        """For `casebook doctor`: per split, every "<asset> <date>" an observation or a reward of
        its decision days reads (observation_span days before a decision day to the day after
        it). Disjoint, the splits cannot leak through overlapping windows."""
        self.prepare_table()
        touched: dict[str, set[str]] = {}
        for split in SPLITS:
            touched[split] = set()
            for bars, days in zip(self.bars, self._days[split], strict=True):
                # Coverage of the intervals [t - span, t + 1] by a difference array.
                edges = np.zeros(len(bars) + 2, dtype=np.int64)
                np.add.at(edges, days - self.observation_span, 1)
                np.add.at(edges, days + 2, -1)
                read = np.cumsum(edges)[: len(bars)] > 0
                dates = bars.dates[read].strftime("%Y-%m-%d")
                touched[split] |= {f"{bars.name} {d}" for d in dates}
        return {"date": touched}

    def inspection_batches(self) -> dict[str, dict[str, torch.Tensor]]:
        """For `casebook doctor`: what the agent reads, since the training batches only pace
        iterations: the normalized feature table and the returns rewards are computed from."""
        self.prepare_table()
        table = self.table
        returns = {"gap": table.gap, "intraday": table.intraday}
        return {"market table": {"features": table.features, **returns}}

    def train_dataloader(self) -> DataLoader:
        # Resumable, so a mid-epoch resume runs only the iterations the epoch had left.
        generator = torch.Generator().manual_seed(self.seed)
        return ResumableDataLoader(
            _Paces(self.iterations_per_epoch), batch_size=None, generator=generator
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Paces(1), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(_Paces(1), batch_size=None)

    # ----------------------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        """Every DDP rank's training environments, saved in checkpoints so `--ckpt_path` resumes
        each rank's episodes where they were (gathered: every rank saves, rank 0 writes)."""
        if self.train_env is None:
            return {}
        return {"train_envs": gather_from_ranks(self.train_env.state_dict())}

    def load_state_dict(self, state_dict: dict) -> None:
        if "train_envs" not in state_dict and "train_env" not in state_dict:
            return
        if self.train_env is None:
            self._pending_env_state = state_dict
            return
        self._pending_env_state = None
        # "train_env": rank 0's alone, as checkpoints held before every rank's was gathered.
        states = state_dict.get("train_envs") or [state_dict["train_env"]]
        rank = self._rank()
        if rank < len(states):
            self.train_env.load_state_dict(states[rank])
        else:
            # More ranks than were saved: a fresh seed from rank 0's generator, distinct per rank.
            saved = torch.Generator()
            saved.set_state(states[0]["generator"])
            self.train_env.seed(int(torch.randint(2**62, (1,), generator=saved)) + rank)
            self.train_env.reset()


def _as_list(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _change(log_values: np.ndarray, days: int) -> np.ndarray:
    """log_values[t] - log_values[t - days], NaN for the first `days` days."""
    out = np.full(len(log_values), np.nan)
    out[days:] = log_values[days:] - log_values[:-days]
    return out
