"""Trading task data: market sources, causal features, leakage-free splits, the trading environment.

casebook fit --config configs/trading.yaml
"""

from datamodules.trading.datamodule import MarketDataModule
from datamodules.trading.env import (
    BacktestAsset,
    BatchedTradingEnv,
    differential_sharpe_ratio,
    net_log_returns,
    simulate,
)
from datamodules.trading.gym_env import TradingGymEnv
from datamodules.trading.sources import PriceBars, load_arch, read_price_csv, synthetic_bars

__all__ = [
    "BacktestAsset",
    "BatchedTradingEnv",
    "MarketDataModule",
    "PriceBars",
    "TradingGymEnv",
    "differential_sharpe_ratio",
    "load_arch",
    "net_log_returns",
    "read_price_csv",
    "simulate",
    "synthetic_bars",
]
