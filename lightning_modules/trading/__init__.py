"""The trading agent: PPOTrader (PPO and A2C), its residual separable CNN policy, backtest figures."""

from lightning_modules.trading.backtest import performance
from lightning_modules.trading.policy import TradingPolicy
from lightning_modules.trading.ppo_trader import PPOTrader, compute_gae

__all__ = ["PPOTrader", "TradingPolicy", "compute_gae", "performance"]
