"""Gymnasium view of one trading episode at a time, for Stable-Baselines3 and other Gym users.

    env = MarketDataModule(source="sp500").make_gym_env("train", seed=0)  # after setup()

Observation: {"market": (channels, window, features) float32, "position": (1,) float32}
(SB3's MultiInputPolicy takes it). Action: Discrete(3) short/flat/long, Discrete(2) flat/long,
or Box([-1], [1]) for a continuous position. Episodes end by time limit, so they are reported as
`truncated`, never `terminated`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from datamodules.trading.env import BatchedTradingEnv


class TradingGymEnv(gym.Env):
    """Wraps a `BatchedTradingEnv` with num_envs=1; its generator gives the episode starts."""

    metadata = {"render_modes": []}

    def __init__(self, env: BatchedTradingEnv) -> None:
        if env.num_envs != 1:
            raise ValueError(f"TradingGymEnv wraps one environment, got num_envs={env.num_envs}")
        self.env = env.to("cpu")
        bound = env.observation_bound
        self.observation_space = spaces.Dict(
            {
                "market": spaces.Box(-bound, bound, env.observation_shape, np.float32),
                "position": spaces.Box(-1.0, 1.0, (1,), np.float32),
            }
        )
        if env.action_mode == "continuous":
            self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        else:
            self.action_space = spaces.Discrete(env.num_actions)

    @staticmethod
    def _observation(market: torch.Tensor, position: torch.Tensor) -> dict[str, np.ndarray]:
        return {"market": market[0].numpy(), "position": position.numpy().astype(np.float32)}

    def _info(self) -> dict[str, Any]:
        return {
            "asset": self.env.current_assets()[0],
            "date": str(self.env.current_dates()[0])[:10],
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.env.seed(seed)
        return self._observation(*self.env.reset()), self._info()

    def step(self, action) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        action = torch.as_tensor(np.asarray(action)).reshape(1)
        market, position, reward, done, info = self.env.step(action)
        truncated = bool(done[0])
        step_info = {"log_return": float(info["log_return"][0])}
        if truncated:
            # The batched env already started the next episode; Gymnasium wants the last
            # observation of this one, and reset() to start the next.
            observation = self._observation(info["final_market"], info["final_position"])
            step_info["episode"] = {
                "r": float(info["episode_return"][0]),
                "l": int(info["episode_length"][0]),
            }
        else:
            observation = self._observation(market, position)
            step_info.update(self._info())
        return observation, float(reward[0]), False, truncated, step_info
