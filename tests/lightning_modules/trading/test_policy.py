"""The policies, GAE, the fast backtest and the optimizers, against plain references."""

import copy
import math

import pytest
import torch
from torch import nn

from lightning_modules.trading import (
    A2CTrader,
    PPOTrader,
    SquareConvPolicy,
    TemporalConvPolicy,
    compute_gae,
    performance,
)
from lightning_modules.trading.evaluation import CANDIDATE_POSITIONS, backtest_positions
from lightning_modules.trading.policy import DepthwiseTimeConv

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


def test_depthwise_time_conv_is_a_depthwise_conv1d():
    for steps, channels, kernel in [(4, 32, 3), (8, 5, 5), (3, 2, 3), (2, 4, 5), (1, 3, 3)]:
        ours = DepthwiseTimeConv(channels, kernel)
        reference = nn.Conv1d(
            channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False
        )
        with torch.no_grad():
            reference.weight.copy_(ours.weight.T.unsqueeze(1))  # (channels, 1, kernel)
        x = torch.randn(7, steps, channels)
        expected = reference(x.transpose(1, 2)).transpose(1, 2)
        torch.testing.assert_close(ours(x), expected)


def test_patch_stem_is_a_strided_conv1d_over_time_and_the_newest_day_ends_the_last_patch():
    shape = (3, 14, 6)  # 14 days, patches of 4: two zero days padded before the oldest
    policy = TemporalConvPolicy(shape, 3, width=8, time_patch=4)
    channels, window, features = shape
    conv = nn.Conv1d(channels * features, 8, 4, stride=4)
    with (
        torch.no_grad()
    ):  # Linear over (time_patch, inputs) = Conv1d weight (out, inputs, time_patch)
        conv.weight.copy_(policy.stem.weight.view(8, 4, channels * features).permute(0, 2, 1))
        conv.bias.copy_(policy.stem.bias)
    market = torch.randn(5, *shape)
    days = market.permute(0, 1, 3, 2).reshape(5, channels * features, window)
    expected = conv(nn.functional.pad(days, (2, 0))).transpose(1, 2)
    ours = policy.stem(
        nn.functional.pad(market.permute(0, 2, 1, 3).reshape(5, window, -1), (0, 0, 2, 0)).reshape(
            5, 4, -1
        )
    )
    torch.testing.assert_close(ours, expected)
    # every day reaches the trunk: the oldest and the newest
    for day in (0, window - 1):
        changed = market.clone()
        changed[:, :, day] += 1.0
        assert not torch.allclose(policy.trunk(market), policy.trunk(changed))


def test_features_are_channels_not_a_spatial_axis():
    """Permuting the features axis is a relabelling of channels: a policy whose stem is permuted
    alike gives the same output (no kernel slides across unrelated features)."""
    shape = (2, 8, 6)
    policy = TemporalConvPolicy(shape, 3, width=8, time_patch=4, highway=False, latest_day=False)
    order = torch.randperm(6)
    permuted = copy.deepcopy(policy)
    with torch.no_grad():
        weight = policy.stem.weight.view(8, 4, 2, 6)  # (out, time, channel, feature)
        permuted.stem.weight.copy_(weight[..., order].reshape(8, -1))
    market = torch.randn(3, *shape)
    torch.testing.assert_close(policy.trunk(market), permuted.trunk(market[..., order]))


def test_blocks_are_residual_separable_with_location_at_every_depth():
    policy = TemporalConvPolicy(SHAPE, 3, width=8, depth=3, time_patch=4)
    assert len(policy.blocks) == 3 and len(policy.positions) == 3
    assert all(isinstance(b.depthwise, DepthwiseTimeConv) for b in policy.blocks)
    assert all(
        isinstance(b.expand, nn.Linear) and isinstance(b.project, nn.Linear) for b in policy.blocks
    )
    block, x = policy.blocks[0], torch.randn(2, 4, 8)
    with torch.no_grad():
        nn.init.zeros_(block.project.weight)
        nn.init.zeros_(block.project.bias)
    assert torch.equal(block(x), x)  # a zeroed branch leaves the identity path
    assert TemporalConvPolicy(SHAPE, 3, position=False).positions is None


def norm_types(policy):
    return {type(m) for m in policy.modules()}


def test_no_batchnorm_unless_asked_for_the_ablation():
    for cls in (TemporalConvPolicy, SquareConvPolicy):
        assert not norm_types(cls(SHAPE, 3)) & {nn.BatchNorm1d, nn.BatchNorm2d}
    assert nn.LayerNorm in norm_types(TemporalConvPolicy(SHAPE, 3, norm="layer"))
    assert nn.GroupNorm in norm_types(TemporalConvPolicy(SHAPE, 3, norm="group"))
    assert nn.BatchNorm1d in norm_types(TemporalConvPolicy(SHAPE, 3, norm="batch"))
    assert nn.BatchNorm2d in norm_types(SquareConvPolicy(SHAPE, 3, norm="batch"))


def test_highway_starts_silent_and_maps_the_newest_day_linearly_to_every_head():
    policy = TemporalConvPolicy(SHAPE, 3)
    assert policy.highway.in_features == SHAPE[0] * SHAPE[2] + 1  # newest day's features + position
    assert policy.highway.weight.abs().sum() == 0
    dist, _, _ = policy(torch.randn(5, *SHAPE), torch.zeros(5))
    assert dist.entropy().mean().item() == pytest.approx(math.log(3), abs=1e-3)
    with torch.no_grad():
        policy.highway.weight.normal_()
    trunk = policy.trunk(torch.randn(5, *SHAPE))
    deep = TemporalConvPolicy(SHAPE, 3, highway=False)
    deep.load_state_dict({k: v for k, v in policy.state_dict().items() if "highway" not in k})
    logits, value, aux = policy.heads(trunk, torch.zeros(5))
    deep_logits, deep_value, deep_aux = deep.heads(trunk, torch.zeros(5))
    newest = trunk[:, -policy.highway_dim :]
    linear = policy.highway(torch.cat([newest, torch.zeros(5, 1)], dim=1))
    torch.testing.assert_close(logits, deep_logits + linear[:, :3])
    torch.testing.assert_close(value, deep_value + linear[:, 3])
    assert [p.shape for p in policy.highway_parameters()] == [(5, 19), (5,)]


def test_orthogonal_init_gives_orthogonal_rows_and_small_policy_head():
    policy = TemporalConvPolicy(SHAPE, 3, init="orthogonal")
    weight = policy.body[0].weight  # (hidden, in): rows orthonormal up to the gain sqrt(2)
    assert torch.allclose(weight @ weight.T, 2.0 * torch.eye(weight.shape[0]), atol=1e-4)
    assert policy.policy_head.weight.norm(dim=1).max().item() == pytest.approx(0.01, rel=1e-3)


def test_square_policy_location_switches_change_the_model():
    with_coords = SquareConvPolicy(SHAPE, 3, coord_channels=True)
    without = SquareConvPolicy(SHAPE, 3, coord_channels=False)
    assert with_coords.stem.in_channels == SHAPE[0] + 2 and without.stem.in_channels == SHAPE[0]
    embedded = SquareConvPolicy(SHAPE, 3, position_embedding=True)
    assert embedded.position_embedding.shape == (1, *SHAPE)


@pytest.mark.parametrize("cls", [TemporalConvPolicy, SquareConvPolicy])
def test_heads_see_the_position(cls):
    policy = cls(SHAPE, 3)
    trunk = policy.trunk(torch.randn(4, *SHAPE))
    flat, _, _ = policy.heads(trunk, torch.zeros(4))
    long, _, _ = policy.heads(trunk, torch.ones(4))
    assert not torch.allclose(flat, long)


@pytest.mark.parametrize(
    "action_mode,num_actions", [("discrete", 3), ("long_only", 2), ("continuous", 1)]
)
def test_fast_backtest_equals_day_by_day_reference(action_mode, num_actions):
    torch.manual_seed(0)
    policy = TemporalConvPolicy(SHAPE, num_actions, action_mode == "continuous", width=8, depth=2)
    with torch.no_grad():  # a decisive policy whose choice depends on the held position
        nn.init.normal_(policy.policy_head.weight, std=3.0)
        nn.init.normal_(policy.body[0].weight[:, -1], std=3.0)  # the position's input weights
    market = torch.randn(40, *SHAPE)
    fast = backtest_positions(market, [policy], [1.0], action_mode)
    held, expected = 0.0, []
    candidates = CANDIDATE_POSITIONS.get(action_mode)
    with torch.no_grad():
        for t in range(len(market)):
            dist, _, _ = policy(market[t : t + 1], torch.tensor([held]))
            if action_mode == "continuous":
                held = float(dist.mean.clamp(-1, 1))
            else:
                held = float(candidates[int(dist.probs.argmax())])
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


def test_a2c_uses_rmsprop_and_ppo_adamw_with_the_highway_at_the_full_rate():
    assert isinstance(
        A2CTrader(observation_shape=SHAPE).configure_optimizers(), torch.optim.RMSprop
    )
    ppo = PPOTrader(observation_shape=SHAPE, lr=1e-3, deep_lr_ratio=0.2, weight_decay=0.1)
    optimizer = ppo.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    highway = {id(p) for p in ppo.policy.highway_parameters()}
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        if ids & highway:
            assert ids == highway and group["lr"] == 1e-3 and group["weight_decay"] == 0.0
        else:
            assert group["lr"] == pytest.approx(2e-4)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(ppo.parameters()))
