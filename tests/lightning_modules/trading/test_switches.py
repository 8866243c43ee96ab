"""The trading agent's training switches take effect: in the policy's modules, in the optimizer,
under bf16 autocast, and with Lightning's weight averaging; gradient accumulation is refused."""

import math
from functools import partial

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn
from torchvision.ops import SqueezeExcitation, StochasticDepth

from datamodules.trading import MarketDataModule, Splits, SyntheticMarket
from lightning_modules.common import lr_multiplier
from lightning_modules.trading import PPOConfig, PPOTrader, SquareConvPolicy, TemporalConvPolicy

TINY_MARKET = dict(
    source="synthetic",
    synthetic=SyntheticMarket(days=600),
    splits=Splits(train_end="2001-06-30", valid_end="2001-12-31"),
    window=8,
    num_envs=4,
    episode_length=16,
    iterations_per_epoch=2,
)
TINY_AGENT = dict(
    policy=partial(TemporalConvPolicy, width=8, depth=1, hidden=16),
    ppo=PPOConfig(rollout_steps=8, update_epochs=1, num_minibatches=2),
)


def policy(**options) -> SquareConvPolicy:
    torch.manual_seed(0)
    return SquareConvPolicy((3, 16, 8), 3, width=16, depth=2, **options)


@pytest.fixture
def train(fit):
    """`train(callbacks, epochs, **options)`: a tiny PPOTrader fitted on synthetic data with the
    shared quiet `fit`; `precision` and `accumulate_grad_batches` go to the Trainer."""

    def run(callbacks=(), epochs: int = 2, **options) -> tuple[L.Trainer, PPOTrader]:
        trainer_options = {
            k: options.pop(k) for k in ("precision", "accumulate_grad_batches") if k in options
        }
        L.seed_everything(0)
        data = MarketDataModule(**TINY_MARKET)
        model = PPOTrader(
            observation_shape=data.observation_shape,
            num_actions=data.num_actions,
            action_mode=data.action_mode,
            **(TINY_AGENT | options),
        )
        return fit(model, data, callbacks, max_epochs=epochs, **trainer_options), model

    return run


NORMS = nn.BatchNorm1d | nn.BatchNorm2d | nn.GroupNorm | nn.LayerNorm


@pytest.mark.parametrize("norm,layer", [("batch", nn.BatchNorm2d), ("group", nn.GroupNorm)])
def test_norm_option_puts_that_norm_in_every_square_block(norm, layer):
    norms = [m for m in policy(norm=norm).modules() if isinstance(m, NORMS)]
    assert len(norms) == 5 and all(isinstance(m, layer) for m in norms)  # 2 per block + final
    assert not any(isinstance(m, NORMS) for m in policy(norm="none").modules())


@pytest.mark.parametrize(
    "norm,layer", [("batch", nn.BatchNorm1d), ("group", nn.GroupNorm), ("layer", nn.LayerNorm)]
)
def test_norm_option_puts_that_norm_in_every_temporal_block(norm, layer):
    net = TemporalConvPolicy((3, 16, 8), 3, depth=3, norm=norm)
    norms = [m for m in net.modules() if isinstance(m, NORMS)]
    assert len(norms) == 3 and all(isinstance(m, layer) for m in norms)
    net(torch.randn(4, 3, 16, 8), torch.zeros(4))  # and it runs on (batch, time, width) tokens


def test_stochastic_depth_and_squeeze_excitation_are_in_the_blocks_and_drop_only_in_training():
    net = policy(drop_path=0.9, squeeze_excitation=True)
    assert sum(isinstance(m, SqueezeExcitation) for m in net.modules()) == 2
    rates = [m.p for m in net.modules() if isinstance(m, StochasticDepth)]
    assert rates == pytest.approx([0.45, 0.9])  # rising linearly with depth
    market = torch.randn(16, 3, 16, 8)
    net.train()
    assert not torch.equal(net.trunk(market), net.trunk(market))  # branches dropped at random
    net.eval()
    assert torch.equal(net.trunk(market), net.trunk(market))


def test_dropout_is_active_in_training_only():
    net, market = policy(dropout=0.5), torch.randn(4, 3, 16, 8)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in net.modules())
    assert not torch.equal(net.train().trunk(market), net.trunk(market))
    assert torch.equal(net.eval().trunk(market), net.trunk(market))


def test_coord_channels_and_position_embedding_add_their_inputs():
    assert policy(coord_channels=True).stem.in_channels == 5  # 3 market + 2 coordinate maps
    assert policy(coord_channels=False).stem.in_channels == 3
    learned = policy(position_embedding=True).position_embedding
    assert isinstance(learned, nn.Parameter) and learned.shape == (1, 3, 16, 8)
    assert policy().position_embedding is None


@pytest.mark.parametrize(
    "init,std", [("xavier", math.sqrt(2 / (16 + 16))), ("kaiming", math.sqrt(2 / 16))]
)
def test_init_scheme_sets_the_hidden_layers_and_keeps_the_small_policy_head(init, std):
    net = policy(init=init)
    pointwise = torch.cat([b.branch[2].pointwise.weight.flatten() for b in net.blocks])
    assert pointwise.std().item() == pytest.approx(std, rel=0.15)
    head = net.policy_head.weight
    assert torch.allclose(head @ head.T, 1e-4 * torch.eye(head.shape[0]), atol=1e-7)  # gain 0.01


def test_weight_decay_reaches_the_optimizer_for_the_deep_paths_weight_matrices_only():
    model = PPOTrader(observation_shape=(3, 16, 8), weight_decay=0.1, **TINY_AGENT)
    decayed, plain, highway = model.configure_optimizers().param_groups
    assert (
        decayed["weight_decay"] == 0.1 and plain["weight_decay"] == highway["weight_decay"] == 0.0
    )
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(p.ndim < 2 for p in plain["params"])


class LearningRates(Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_lr_schedule_and_warm_up_set_the_rate_of_every_iteration(train):
    record = LearningRates()
    train([record], lr=1e-3, deep_lr_ratio=0.5, lr_schedule="cosine", warmup_steps=1)
    expected = [0.5e-3 * lr_multiplier("cosine", i, 4, 1) for i in range(4)]  # the deep path's
    assert record.lrs == pytest.approx(expected)


class AutocastProbe(Callback):
    def on_fit_start(self, trainer, pl_module) -> None:
        self.seen = []
        pl_module.policy.stem.register_forward_hook(
            lambda m, i, out: self.seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        )


def test_bf16_mixed_runs_the_policy_under_cpu_autocast_with_finite_losses(train):
    probe = AutocastProbe()
    trainer, _ = train([probe], precision="bf16-mixed", epochs=1)
    assert probe.seen and all(on and dtype == torch.bfloat16 for on, dtype in probe.seen)
    for name in ("policy_loss", "value_loss", "approx_kl"):
        assert torch.isfinite(trainer.callback_metrics[f"train/{name}"]), name


def test_gradient_accumulation_is_refused_with_manual_optimization(train):
    with pytest.raises(MisconfigurationException, match="manual optimization"):
        train(accumulate_grad_batches=2, epochs=1)


class AverageDistance(Callback):
    """After each iteration: how far the EMA policy is from the trained one."""

    def __init__(self, ema: EMAWeightAveraging) -> None:
        self.ema, self.distances = ema, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        averaged = self.ema._average_model.module.policy.value_head.weight
        self.distances.append((averaged - pl_module.policy.value_head.weight).norm().item())


def test_ema_of_weights_trails_the_trained_policy_and_replaces_it_at_the_end(train):
    ema = EMAWeightAveraging(decay=0.9)
    distance = AverageDistance(ema)
    _, model = train([ema, distance])
    assert distance.distances[0] == 0.0  # the first update copies the weights
    assert all(d > 0 for d in distance.distances[1:])
    averaged = ema._average_model.module.policy.value_head.weight
    assert torch.equal(model.policy.value_head.weight, averaged)
