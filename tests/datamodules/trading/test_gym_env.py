"""The Gymnasium adapter passes Gymnasium's own checker and reports time-limit truncation."""

import pytest
from gymnasium.utils.env_checker import check_env


@pytest.mark.parametrize("action_mode", ["discrete", "long_only", "continuous"])
def test_gym_adapter_passes_check_env(make_module, action_mode):
    env = make_module(action_mode=action_mode).make_gym_env("train", seed=0)
    check_env(env, skip_render_check=True)


def test_gym_episode_ends_truncated_with_its_last_observation(make_module):
    env = make_module(episode_length=5).make_gym_env("valid")
    observation, info = env.reset(seed=3)
    assert set(observation) == {"market", "position"} and info["asset"] == "synthetic"
    for step in range(5):
        observation, reward, terminated, truncated, info = env.step(2)
        assert not terminated and truncated == (step == 4)
    assert observation["position"][0] == 1.0  # the final observation, not the next episode's
    assert info["episode"]["l"] == 5
