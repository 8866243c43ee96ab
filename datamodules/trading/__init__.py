"""Trading task data: market sources (real, CSV, the planted-edge family), causal features,
leakage-free splits, the batched trading environment.

    casebook fit --config configs/ppo_trader.yaml
"""

from datamodules.trading.datamodule import MarketDataModule, TradingData
from datamodules.trading.env import (
    BacktestAsset,
    BatchedTradingEnv,
    differential_sharpe_ratio,
    net_log_returns,
    simulate,
)
from datamodules.trading.gym_env import TradingGymEnv
from datamodules.trading.sources import PriceBars, load_arch, read_price_csv
from datamodules.trading.splits import Splits
from datamodules.trading.synthetic import SyntheticMarket, synthetic_market, write_market_csv

__all__ = [
    "BacktestAsset",
    "BatchedTradingEnv",
    "MarketDataModule",
    "PriceBars",
    "Splits",
    "SyntheticMarket",
    "TradingData",
    "TradingGymEnv",
    "differential_sharpe_ratio",
    "load_arch",
    "net_log_returns",
    "read_price_csv",
    "simulate",
    "synthetic_market",
    "write_market_csv",
]
