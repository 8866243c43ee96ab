"""The trading agent: PPO (ppo.py) and its A2C sibling (a2c.py), the policies (policy.py), the
backtests, baselines and report (evaluation.py, baselines.py, backtest.py)."""

from lightning_modules.trading.a2c import A2CTrader
from lightning_modules.trading.backtest import performance
from lightning_modules.trading.evaluation import BacktestConfig
from lightning_modules.trading.policy import SquareConvPolicy, TemporalConvPolicy, TradingPolicy
from lightning_modules.trading.ppo import PPOConfig, PPOTrader, compute_gae

__all__ = [
    "A2CTrader",
    "BacktestConfig",
    "PPOConfig",
    "PPOTrader",
    "SquareConvPolicy",
    "TemporalConvPolicy",
    "TradingPolicy",
    "compute_gae",
    "performance",
]
