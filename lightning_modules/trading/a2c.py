"""A2C, the synchronous A3C that PPO replaced, as PPO's small sibling: the same rollouts, GAE,
policy and backtests; one plain policy-gradient step on the whole rollout with RMSprop.

    casebook fit --config configs/ppo_trader.yaml --config configs/a2c_trader.yaml

Mnih et al. 2016; the settings (short rollouts, RMSprop, Monte Carlo-like returns) follow
Stable-Baselines3's A2C, set in configs/a2c_trader.yaml.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from lightning_modules.trading.ppo import PPOTrader


class A2CTrader(PPOTrader):
    """A trading agent trained by A2C: every rollout is one minibatch, used once, unclipped."""

    def setup(self, stage: str) -> None:
        super().setup(stage)
        # One epoch, one minibatch, no clipped value loss: what makes it A2C rather than PPO.
        self.config = dataclasses.replace(
            self.config, update_epochs=1, num_minibatches=1, clip_value_loss=False, target_kl=None
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # RMSprop as in A3C/A2C and Stable-Baselines3's A2C.
        return torch.optim.RMSprop(self.parameters(), lr=self.hparams.lr, alpha=0.99, eps=1e-5)

    def policy_loss(self, advantage: Tensor, ratio: Tensor, logprob: Tensor) -> Tensor:
        """The vanilla policy gradient: -A log pi(a|s)."""
        return -(advantage * logprob).mean()
