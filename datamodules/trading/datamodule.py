"""MarketDataModule: daily OHLCV bars -> causal features -> splits -> trading environments.

    casebook fit --config configs/trading.yaml --data.source '[sp500, nasdaq]'

The training "data" is an environment, not a dataset: `train_env` (a `BatchedTradingEnv`) is built
in `setup("fit")` and the LightningModule collects its rollouts from it; `train_dataloader` only
paces the loop with `iterations_per_epoch` dummy items (one rollout + update each).
`val_dataloader`/`test_dataloader` yield one dummy item: the module backtests the whole split,
from `backtest_data(split)` and `simulate`, in one step.

Several sources (e.g. [sp500, nasdaq]) form a pooled universe: every environment episode trades
one asset, drawn uniformly over all (asset, start day) pairs of the split; normalization
statistics are shared and fitted on the training decision days of all assets; backtests run
per asset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, IterableDataset

from datamodules.errors import DataError
from datamodules.resume import ResumableDataLoader, gather_from_ranks
from datamodules.trading.env import (
    ACTION_MODES,
    EXECUTIONS,
    REWARDS,
    BacktestAsset,
    BatchedTradingEnv,
    MarketTable,
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
    SOURCES,
    PriceBars,
    load_arch,
    read_price_csv,
    synthetic_bars,
)
from datamodules.trading.splits import (
    SPLIT_MODES,
    SPLITS,
    date_labels,
    decision_days,
    episode_starts,
    regime_blocks,
    regime_labels,
    runs,
    walk_forward_labels,
)


class _Paces(IterableDataset):
    """`length` dummy items. Iterable, so Lightning adds no DistributedSampler: every DDP rank
    runs all `length` iterations on its own environments."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(torch.arange(self.length))


class MarketDataModule(L.LightningDataModule):
    """Daily market data as trading environments (train) and per-asset backtests (valid/test).

    Observation: [channels, window, features] where channels are the bar `timeframes` (1-, 5-
    and 21-day bars ending on each day) and features are open/high/low/close log returns against
    the close before the bar, a volume z-score and realized volatility (features.py), each
    normalized with training statistics and clipped to +-`observation_clip`; plus the position.

    Args:
        source: "sp500" | "nasdaq" (arch's daily OHLCV 1999-2018) | "csv" | "synthetic", or a
            list of them for a pooled multi-asset universe, e.g. [sp500, nasdaq].
        path: CSV file(s) for source "csv": columns date, open, high, low, close, volume, any
            case and order; one asset per file.
        window: Trading days per observation (rows of each square).
        timeframes: Bar lengths in days, one observation channel each.
        volume_lookback: Days of log volume the volume z-score is measured against.
        volatility_bars: Realized volatility of channel k spans volatility_bars * k days.
        split_mode: "date" | "walk_forward" | "regime" (see splits.py; "regime" leaks, read why).
        train_end: Last day of the training split (split_mode "date").
        valid_end: Last day of the validation split; the test split is everything after.
        embargo_days: Days at the start of each split whose observations would reach into the
            previous split; None = the observation span (window - 1 + feature lookback), the
            minimum allowed.
        folds: Number of walk-forward folds (split_mode "walk_forward").
        fold: Which walk-forward fold, 0-based: trains on chunks 0..fold, validates on fold+1.
        regime_block_days: Block length of the regime-stratified split, in trading days.
        valid_fraction: Share of blocks per regime that go to valid (split_mode "regime").
        episode_length: Decision days per environment episode.
        num_envs: Parallel environments in `train_env`.
        action_mode: "discrete" (short/flat/long), "long_only" (flat/long) or "continuous".
        cost_bps: Transaction cost per unit of position change, in basis points.
        reward: "log_return" (net log P&L) or "differential_sharpe" (Moody & Saffell 1998).
        execution: "next_open" (fill at the next open) or "close" (fill at today's close).
        dsr_eta: Adaptation rate of the differential Sharpe ratio's moving moments.
        observation_clip: Normalized features are clipped to +-this.
        iterations_per_epoch: Rollout+update iterations per training epoch.
        seed: Seed of the environments (each DDP rank adds its rank) and synthetic data.
        signal_strength: Synthetic: correlation of tomorrow's intraday return with today's
            (planted, tradable at the next open); 0 = no signal.
        synthetic_days: Synthetic: trading days per asset, from 1999-01-04.
        synthetic_assets: Synthetic: number of independent assets.
        synthetic_volatility: Synthetic: daily volatility of the calm regime.
        regime_switch_probability: Synthetic: daily probability of leaving the calm regime.
    """

    def __init__(
        self,
        source: str | list[str] = "sp500",
        path: str | list[str] | None = None,
        window: int = 32,
        timeframes: tuple[int, ...] = (1, 5, 21),
        volume_lookback: int = 63,
        volatility_bars: int = 4,
        split_mode: str = "date",
        train_end: str = "2012-12-31",
        valid_end: str = "2015-12-31",
        embargo_days: int | None = None,
        folds: int = 4,
        fold: int = 0,
        regime_block_days: int = 252,
        valid_fraction: float = 0.2,
        episode_length: int = 256,
        num_envs: int = 64,
        action_mode: str = "discrete",
        cost_bps: float = 5.0,
        reward: str = "log_return",
        execution: str = "next_open",
        dsr_eta: float = 0.01,
        observation_clip: float = 10.0,
        iterations_per_epoch: int = 20,
        seed: int = 0,
        signal_strength: float = 0.1,
        synthetic_days: int = 5031,
        synthetic_assets: int = 1,
        synthetic_volatility: float = 0.01,
        regime_switch_probability: float = 0.02,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.sources = [source] if isinstance(source, str) else list(source)
        self.paths = [] if path is None else [path] if isinstance(path, str) else list(path)
        for name in self.sources:
            if name not in SOURCES:
                raise ValueError(f"unknown source {name!r}; expected one of {SOURCES}")
        if "csv" in self.sources and not self.paths:
            raise ValueError("source 'csv' needs --data.path (one file or a list)")
        if split_mode not in SPLIT_MODES:
            raise ValueError(f"split_mode must be one of {SPLIT_MODES}, got {split_mode!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        if execution not in EXECUTIONS:
            raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
        if window < 1 or episode_length < 1 or num_envs < 1 or min(timeframes) < 1:
            raise ValueError("window, episode_length, num_envs and timeframes must be positive")
        self.window = window
        self.timeframes = [int(k) for k in timeframes]
        self.volume_lookback = volume_lookback
        self.volatility_bars = volatility_bars
        self.feature_lookback = feature_lookback(self.timeframes, volume_lookback, volatility_bars)
        # Days before decision day t that its observation reads.
        self.observation_span = window - 1 + self.feature_lookback
        if embargo_days is None:
            embargo_days = self.observation_span
        if embargo_days < self.observation_span:
            raise ValueError(
                f"embargo_days={embargo_days} is shorter than the observation span of "
                f"{self.observation_span} days (window {window} - 1 + feature lookback "
                f"{self.feature_lookback}): observations would straddle two splits"
            )
        if split_mode == "regime" and regime_block_days <= embargo_days + 1:
            raise ValueError(
                f"regime_block_days={regime_block_days} leaves no decision day after the "
                f"embargo of {embargo_days} days; use more than {embargo_days + 1}"
            )
        self.embargo_days = embargo_days
        self.split_mode = split_mode
        self.train_end = pd.Timestamp(train_end)
        self.valid_end = pd.Timestamp(valid_end)
        if split_mode == "date" and self.train_end >= self.valid_end:
            raise ValueError(f"train_end {train_end} must come before valid_end {valid_end}")
        self.folds, self.fold = folds, fold
        self.regime_block_days, self.valid_fraction = regime_block_days, valid_fraction
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
        self.synthetic = dict(
            days=synthetic_days,
            signal_strength=signal_strength,
            volatility=synthetic_volatility,
            regime_switch_probability=regime_switch_probability,
        )
        self.synthetic_assets = synthetic_assets
        self.observation_shape: tuple[int, int, int] = (
            len(self.timeframes),
            window,
            len(FEATURE_NAMES),
        )
        self.feature_names = FEATURE_NAMES
        self.bars: list[PriceBars] | None = None
        self.table: MarketTable | None = None
        self.train_env: BatchedTradingEnv | None = None
        self._pending_env_state: dict | None = None

    # ----------------------------------------------------------------------------- data
    def load_bars(self) -> list[PriceBars]:
        """Every asset of every source, with unique names."""
        bars: list[PriceBars] = []
        for name in self.sources:
            if name in ARCH_SOURCES:
                bars.append(load_arch(name))
            elif name == "csv":
                bars.extend(read_price_csv(p) for p in self.paths)
            else:
                for i in range(self.synthetic_assets):
                    label = "synthetic" if self.synthetic_assets == 1 else f"synthetic{i}"
                    bars.append(synthetic_bars(label, seed=self.seed * 1009 + i, **self.synthetic))
        seen: dict[str, int] = {}
        unique = []
        for b in bars:
            seen[b.name] = seen.get(b.name, 0) + 1
            name = b.name if seen[b.name] == 1 else f"{b.name}_{seen[b.name]}"
            unique.append(dataclasses.replace(b, name=name))
        return unique

    def split_labels(self, bars: list[PriceBars]) -> list[np.ndarray]:
        """TRAIN/VALID/TEST/UNUSED label of every day of every asset (see splits.py)."""
        if self.split_mode == "date":
            return [date_labels(b.dates, self.train_end, self.valid_end) for b in bars]
        calendar = pd.DatetimeIndex(np.unique(np.concatenate([b.dates.values for b in bars])))
        if self.split_mode == "walk_forward":
            return [
                walk_forward_labels(b.dates, calendar, self.valid_end, self.folds, self.fold)
                for b in bars
            ]
        closes = [pd.Series(b.close, index=b.dates) for b in bars]
        blocks = regime_blocks(
            calendar, closes, self.valid_end, self.regime_block_days, self.valid_fraction
        )
        return [regime_labels(b.dates, blocks, self.valid_end) for b in bars]

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
        labels = self.split_labels(bars)
        raw = [
            compute_features(b, self.timeframes, self.volume_lookback, self.volatility_bars)
            for b in bars
        ]
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
                f"(split_mode {self.split_mode}, train_end {self.train_end.date()}; "
                f"each split needs more than {self.observation_span + 1} trading days)"
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
        self._offsets = np.cumsum([0] + [len(b) for b in bars])[:-1]
        self.bars = bars
        self.labels = labels
        self._backtest_cache: dict[str, list[BacktestAsset]] = {}
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

    def make_gym_env(self, split: str = "train", seed: int | None = None):
        """A one-episode Gymnasium view (`TradingGymEnv`) of `split`."""
        from datamodules.trading.gym_env import TradingGymEnv

        return TradingGymEnv(self.make_env(split, num_envs=1, seed=seed))

    def _describe_empty(self, split: str) -> str:
        return (
            f"{', '.join(self.table.asset_names)}: split {split!r} has no decision days "
            f"({self.split_mode} split, train_end {self.train_end.date()}, valid_end "
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
