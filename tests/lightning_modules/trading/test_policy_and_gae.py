import math

import pytest
import torch
from torch import nn

from lightning_modules.trading import PPOTrader, TradingPolicy, compute_gae, performance

SHAPE = (3, 16, 6)


def reference_gae(rewards, values, dones, next_value, gamma, lam):
    """The textbook recursion, one environment and one step at a time, in plain Python floats."""
    steps, envs = len(rewards), len(rewards[0])
    advantages = [[0.0] * envs for _ in range(steps)]
    for e in range(envs):
        running = 0.0
        for t in reversed(range(steps)):
            following = next_value[e] if t == steps - 1 else values[t + 1][e]
            alive = 0.0 if dones[t][e] else 1.0
            delta = rewards[t][e] + gamma * following * alive - values[t][e]
            running = delta + gamma * lam * alive * running
            advantages[t][e] = running
    return advantages


def test_gae_equals_plain_reference_loop():
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(9, 4, generator=generator)
    values = torch.randn(9, 4, generator=generator)
    dones = torch.rand(9, 4, generator=generator) < 0.2
    next_value = torch.randn(4, generator=generator)
    advantages, returns = compute_gae(rewards, values, dones, next_value, gamma=0.9, gae_lambda=0.8)
    expected = reference_gae(
        rewards.tolist(), values.tolist(), dones.tolist(), next_value.tolist(), 0.9, 0.8
    )
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-5)
    assert torch.allclose(returns, advantages + values)


def test_gae_with_lambda_one_and_no_dones_is_discounted_return_minus_value():
    rewards = torch.ones(3, 1)
    values = torch.zeros(3, 1)
    advantages, _ = compute_gae(
        rewards, values, torch.zeros(3, 1, dtype=torch.bool), torch.tensor([10.0]), 0.5, 1.0
    )
    assert advantages[0, 0].item() == pytest.approx(1 + 0.5 + 0.25 + 0.125 * 10)


def norm_types(policy):
    return {type(m) for m in policy.modules()}


def test_policy_uses_no_batchnorm_unless_asked_for_the_ablation():
    assert nn.BatchNorm2d not in norm_types(TradingPolicy(SHAPE, 3, norm="group"))
    assert nn.GroupNorm in norm_types(TradingPolicy(SHAPE, 3, norm="layer"))
    assert nn.BatchNorm2d in norm_types(TradingPolicy(SHAPE, 3, norm="batch"))


def test_blocks_are_residual_depthwise_separable():
    policy = TradingPolicy(SHAPE, 3, width=8, depth=5)
    assert len(policy.blocks) == 5
    depthwise = [
        m for m in policy.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1
    ]
    assert len(depthwise) == 10  # two separable convolutions per block
    block = policy.blocks[0]
    x = torch.randn(2, 8, 8, 6)
    with torch.no_grad():
        nn.init.zeros_(block.branch[-2].pointwise.weight)
        nn.init.zeros_(block.branch[-2].pointwise.bias)
    assert torch.equal(block(x), x)  # a zeroed branch leaves the identity path


def test_orthogonal_init_gives_orthogonal_rows_and_small_policy_head():
    policy = TradingPolicy(SHAPE, 3, init="orthogonal")
    weight = policy.body[0].weight  # (hidden, in): rows orthonormal up to the gain sqrt(2)
    assert torch.allclose(weight @ weight.T, 2.0 * torch.eye(weight.shape[0]), atol=1e-4)
    assert policy.policy_head.weight.norm(dim=1).max().item() == pytest.approx(0.01, rel=1e-3)
    dist, _, _ = policy(torch.randn(5, *SHAPE), torch.zeros(5))
    assert dist.entropy().mean().item() == pytest.approx(
        math.log(3), abs=1e-3
    )  # near-uniform first policy


def test_location_switches_change_the_model():
    with_coords = TradingPolicy(SHAPE, 3, coord_channels=True)
    without = TradingPolicy(SHAPE, 3, coord_channels=False)
    assert with_coords.stem.in_channels == SHAPE[0] + 2 and without.stem.in_channels == SHAPE[0]
    embedded = TradingPolicy(SHAPE, 3, position_embedding=True)
    assert embedded.position_embedding.shape == (1, *SHAPE)


def test_heads_see_the_position():
    policy = TradingPolicy(SHAPE, 3)
    trunk = policy.trunk(torch.randn(4, *SHAPE))
    flat, _, _ = policy.heads(trunk, torch.zeros(4))
    long, _, _ = policy.heads(trunk, torch.ones(4))
    assert not torch.allclose(flat, long)


@pytest.mark.parametrize(
    "action_mode,num_actions", [("discrete", 3), ("long_only", 2), ("continuous", 1)]
)
def test_fast_backtest_equals_day_by_day_reference(action_mode, num_actions):
    torch.manual_seed(0)
    trader = PPOTrader(
        observation_shape=SHAPE, num_actions=num_actions, action_mode=action_mode, width=8, depth=2
    )
    with torch.no_grad():  # a decisive policy whose choice depends on the held position
        nn.init.normal_(trader.policy.policy_head.weight, std=3.0)
        nn.init.normal_(
            trader.policy.body[0].weight[:, -1], std=3.0
        )  # the position's input weights
    market = torch.randn(40, *SHAPE)
    fast = trader.backtest_positions(market)
    held, expected = 0.0, []
    with torch.no_grad():
        for t in range(len(market)):
            dist, _, _ = trader.policy(market[t : t + 1], torch.tensor([held]))
            if action_mode == "continuous":
                held = float(dist.mean.clamp(-1, 1))
            else:
                held = float(trader.candidate_positions()[int(dist.probs.argmax())])
            expected.append(held)
    assert torch.allclose(fast, torch.tensor(expected), atol=1e-5)
    if action_mode != "continuous":
        assert len(set(expected)) > 1  # the check is not vacuous


def test_performance_figures_match_hand_computation():
    log_returns = torch.tensor([0.1, -0.2, 0.05, 0.0])
    positions = torch.tensor([1.0, 1.0, -1.0, 0.0])
    figures = performance(log_returns, positions, periods_per_year=4)
    r = log_returns.double()
    assert figures["total_return"] == pytest.approx(math.exp(-0.05) - 1)
    assert figures["sharpe"] == pytest.approx(float(r.mean() / r.std() * 2))
    # equity 1 → e^.1 → e^-.1 → e^-.05: worst fall from the e^.1 peak to e^-.1
    assert figures["max_drawdown"] == pytest.approx(1 - math.exp(-0.2))
    assert figures["turnover"] == pytest.approx((1 + 0 + 2 + 1) / 4)
    assert figures["hit_rate"] == pytest.approx(2 / 3)


def test_a2c_uses_rmsprop_and_ppo_adamw():
    assert isinstance(
        PPOTrader(observation_shape=SHAPE, algorithm="a2c").configure_optimizers(),
        torch.optim.RMSprop,
    )
    assert isinstance(
        PPOTrader(observation_shape=SHAPE, algorithm="ppo").configure_optimizers(),
        torch.optim.AdamW,
    )
    with pytest.raises(ValueError, match="algorithm"):
        PPOTrader(observation_shape=SHAPE, algorithm="a3c")
