"""The batched environment: next-bar fills, costs, a per-env reference, resets, resume, devices."""

import numpy as np
import pytest
import torch

from datamodules.trading import net_log_returns, simulate
from datamodules.trading.env import differential_sharpe_ratio
from datamodules.trading.features import compute_features


def _one_env_at(module, row: int, **overrides):
    env = module.make_env("train", num_envs=1, seed=0)
    env.row = torch.tensor([row])
    env.last_row = torch.tensor([row + 10])
    for name, value in overrides.items():
        setattr(env, name, torch.tensor([value]))
    return env


def test_env_fills_orders_at_next_bar(make_module, bars, changed_after):
    day = 120  # a training decision day
    module = make_module([bars])
    env = _one_env_at(module, day, position=-1.0)
    _, _, reward, _, _ = env.step(torch.tensor([2]))  # short -> long
    o, c = bars.open, bars.close
    expected = -np.log(o[day + 1] / c[day]) + np.log(c[day + 1] / o[day + 1]) - 5e-4 * 2
    assert reward.item() == pytest.approx(expected, abs=1e-6)

    # The reward of the action taken on day t uses day t+1 and nothing later.
    later_changed = make_module([changed_after(bars, day + 1, factor=2.0)])
    env = _one_env_at(later_changed, day, position=-1.0)
    assert env.step(torch.tensor([2]))[2].item() == reward.item()
    # ...and changes when day t+1 does. (That the observation of day t ignores day t+1 is
    # test_features.py::test_changing_prices_after_day_t_changes_no_observation_at_or_before_t.)
    next_changed = make_module([changed_after(bars, day, factor=1.01)])
    env = _one_env_at(next_changed, day, position=-1.0)
    assert env.step(torch.tensor([2]))[2].item() != pytest.approx(reward.item(), abs=1e-6)


def test_close_execution_holds_the_new_position_from_todays_close(make_module, bars):
    day = 150
    env = _one_env_at(make_module([bars], execution="close", cost_bps=0.0), day, position=0.0)
    reward = env.step(torch.tensor([2]))[2].item()
    assert reward == pytest.approx(np.log(bars.close[day + 1] / bars.close[day]), abs=1e-6)


def test_costs_are_charged_on_position_changes_only():
    zero = torch.zeros(4)
    previous = torch.tensor([0.0, 1.0, 1.0, -0.5])
    position = torch.tensor([1.0, 1.0, -1.0, 0.5])
    cost = net_log_returns(previous, position, zero, zero, cost_bps=10.0)
    torch.testing.assert_close(cost, torch.tensor([-1e-3, 0.0, -2e-3, -1e-3]))


def test_batched_env_equals_a_per_env_python_reference(make_module, bars):
    module = make_module([bars], num_envs=5, cost_bps=7.0, episode_length=6)
    env = module.make_env("train", seed=11)
    mean, std = module.feature_mean.double().numpy(), module.feature_std.double().numpy()
    raw = compute_features(bars, [1, 3], 10, 2)
    window, clip = 8, module.observation_clip

    def reference_observation(day):
        return np.clip((raw[day - window + 1 : day + 1] - mean) / std, -clip, clip).transpose(
            1, 0, 2
        )

    positions = [0.0] * 5
    steps = [0] * 5
    generator = torch.Generator().manual_seed(5)
    market, _ = env.reset()
    for _ in range(15):
        days = env.row.tolist()
        for i, day in enumerate(days):
            np.testing.assert_allclose(market[i].numpy(), reference_observation(day), atol=1e-5)
        action = torch.randint(0, 3, (5,), generator=generator)
        market, position, reward, done, info = env.step(action)
        for i, day in enumerate(days):
            new = float(action[i]) - 1.0
            expected = (
                positions[i] * np.log(bars.open[day + 1] / bars.close[day])
                + new * np.log(bars.close[day + 1] / bars.open[day + 1])
                - 7e-4 * abs(new - positions[i])
            )
            assert reward[i].item() == pytest.approx(expected, abs=1e-6)
            positions[i], steps[i] = new, steps[i] + 1
            assert bool(done[i]) == (steps[i] == 6)
            if steps[i] == 6:  # same-step reset to a fresh, flat episode
                assert info["episode_length"][i].item() == 6
                positions[i], steps[i] = 0.0, 0
            assert position[i].item() == positions[i]


def test_finished_episodes_report_returns_and_restart_in_the_same_step(make_module):
    module = make_module(num_envs=3, episode_length=4, cost_bps=0.0)
    env = module.make_env("train", seed=0)
    env.reset()
    total = torch.zeros(3)
    for step in range(4):
        _, position, reward, done, info = env.step(torch.full((3,), 2))
        total += reward
        assert done.all() == (step == 3)
    torch.testing.assert_close(info["episode_return"], total)
    torch.testing.assert_close(info["episode_log_return"], total)
    assert (info["final_position"] == 1).all() and (position == 0).all()
    assert (env.steps == 0).all()


def test_simulate_reproduces_the_environment_rewards(make_module):
    module = make_module(cost_bps=3.0)
    [asset] = module.backtest_data("valid")
    env = _one_env_at(module, int(module.decision_rows("valid")[0]))
    env.last_row = torch.tensor([10_000])
    actions = torch.randint(0, 3, (len(asset),), generator=torch.Generator().manual_seed(0))
    rewards = torch.stack([env.step(a.reshape(1))[2][0] for a in actions])
    torch.testing.assert_close(simulate(actions.float() - 1, asset, cost_bps=3.0), rewards)
    batched = simulate(torch.stack([actions.float() - 1, torch.ones(len(asset))]), asset, 3.0)
    assert batched.shape == (2, len(asset))
    torch.testing.assert_close(batched[0], rewards)


def test_action_modes_map_actions_to_positions(make_module):
    for mode, action, expected in [
        ("discrete", [0, 1, 2], [-1.0, 0.0, 1.0]),
        ("long_only", [0, 1, 1], [0.0, 1.0, 1.0]),
        ("continuous", [-3.0, 0.25, 0.7], [-1.0, 0.25, 0.7]),
    ]:
        env = make_module(action_mode=mode, num_envs=3).train_env
        position = env.step(torch.tensor(action))[1]
        torch.testing.assert_close(position, torch.tensor(expected))


def test_differential_sharpe_reward_follows_moody_and_saffell(make_module):
    module = make_module(reward="differential_sharpe", dsr_eta=0.05, num_envs=2)
    env = module.train_env
    a, b = torch.zeros(2), torch.full((2,), module.dsr_initial_variance)
    for _ in range(5):
        _, _, reward, _, info = env.step(torch.tensor([2, 0]))
        r = info["log_return"]
        expected = (b * (r - a) - 0.5 * a * (r * r - b)) / (b - a * a) ** 1.5
        torch.testing.assert_close(reward, expected)
        a, b = a + 0.05 * (r - a), b + 0.05 * (r * r - b)
    d, _, _ = differential_sharpe_ratio(torch.tensor([0.01]), torch.zeros(1), torch.ones(1), 0.1)
    assert d.item() > 0


def test_state_dict_round_trip_continues_identically(make_module):
    module = make_module(episode_length=5)
    env = module.make_env("train", seed=1)
    generator = torch.Generator().manual_seed(2)
    actions = [torch.randint(0, 3, (6,), generator=generator) for _ in range(20)]
    for action in actions[:7]:
        env.step(action)
    state = env.state_dict()
    expected = [env.step(action) for action in actions[7:]]

    resumed = module.make_env("train", seed=999)
    resumed.load_state_dict(state)
    for action, (market, position, reward, done, _) in zip(actions[7:], expected, strict=True):
        got = resumed.step(action)
        for a, b in zip(got[:4], (market, position, reward, done), strict=True):
            assert torch.equal(a, b)


def test_datamodule_checkpoint_state_resumes_the_training_environments(make_module):
    module = make_module()
    module.train_env.step(torch.ones(6, dtype=torch.long))
    state = module.state_dict()
    reference = module.train_env.step(torch.full((6,), 2))

    fresh = make_module()
    for _ in range(3):
        fresh.train_env.step(torch.zeros(6, dtype=torch.long))
    fresh.load_state_dict(state)
    resumed = fresh.train_env.step(torch.full((6,), 2))
    assert torch.equal(resumed[0], reference[0]) and torch.equal(resumed[2], reference[2])


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ),
    ],
)
def test_env_runs_on_any_device_with_to(make_module, device):
    module = make_module()
    reference = module.make_env("train", seed=4)
    expected = [reference.step(torch.full((6,), 2))[2] for _ in range(3)]
    env = module.make_env("train", seed=4).to(device)
    assert env.observe()[0].device.type == device
    for want in expected:
        market, position, reward, done, _ = env.step(torch.full((6,), 2, device=device))
        assert reward.device.type == device and market.dtype == torch.float32
        torch.testing.assert_close(reward.cpu(), want)
    env.to("cpu")
    assert env.row.device.type == "cpu"
