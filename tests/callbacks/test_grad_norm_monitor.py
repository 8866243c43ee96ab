import math

import lightning as L
import pytest
import torch
from casebook_runner import casebook
from lightning.pytorch import Callback
from tiny_task import NaNAtStep, TinyDataModule, TinyRegressor
from torch.nn.utils import get_total_norm

from callbacks import GradNormMonitor, NonFiniteError


class GradientProbe(Callback):
    """Records what a careful reader would compute by hand at the same moment."""

    def __init__(self):
        self.total_norms = []
        self.parameters_after = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.total_norms.append(float(get_total_norm(grads)) if grads else None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.parameters_after.append([p.detach().clone() for p in pl_module.parameters()])


def trainer_with(*callbacks, max_steps=3, tmp_path=None, **kwargs):
    return L.Trainer(
        max_steps=max_steps,
        callbacks=list(callbacks),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        limit_val_batches=0,
        **kwargs,
    )


def test_global_norm_equals_torch_total_norm_of_same_gradients(tmp_path):
    L.seed_everything(0)
    monitor, probe = GradNormMonitor(log_every_n_steps=1), GradientProbe()
    trainer_with(monitor, probe, max_steps=1, tmp_path=tmp_path).fit(
        TinyRegressor(feature_dim=4), TinyDataModule()
    )
    assert monitor.last_global_norm == pytest.approx(probe.total_norms[-1], rel=1e-6)
    # the per-layer norms are a partition of the same gradients
    combined = math.sqrt(sum(v**2 for v in monitor.last_layer_norms.values()))
    assert combined == pytest.approx(probe.total_norms[-1], rel=1e-6)
    assert set(monitor.last_layer_norms) == {"net.0", "net.2"}


def test_norms_are_read_before_trainer_clipping(tmp_path):
    L.seed_everything(0)
    monitor, probe = GradNormMonitor(), GradientProbe()
    trainer = trainer_with(monitor, probe, max_steps=1, tmp_path=tmp_path, gradient_clip_val=1e-4)
    trainer.fit(TinyRegressor(feature_dim=4), TinyDataModule())
    assert monitor.last_global_norm > 1e-3  # the unclipped norm, far above the clip value


def test_warns_once_naming_the_exploding_layer(tmp_path):
    monitor = GradNormMonitor(explode_threshold=1e-12)
    with pytest.warns(UserWarning, match=r"layer 'net\.0' exploded") as record:
        trainer_with(monitor, max_steps=4, tmp_path=tmp_path).fit(
            TinyRegressor(feature_dim=4), TinyDataModule()
        )
    explode_warnings = [w for w in record if "net.0' exploded" in str(w.message)]
    assert len(explode_warnings) == 1


def test_warns_on_vanishing_gradients(tmp_path):
    monitor = GradNormMonitor(vanish_threshold=1e12)
    with pytest.warns(UserWarning, match="vanished"):
        trainer_with(monitor, max_steps=1, tmp_path=tmp_path).fit(
            TinyRegressor(feature_dim=4), TinyDataModule()
        )


def test_nonfinite_loss_saves_checkpoint_then_stops_with_clear_message(tmp_path):
    monitor = GradNormMonitor(on_nonfinite="stop")
    trainer = trainer_with(monitor, max_steps=5, tmp_path=tmp_path)
    with pytest.raises(
        NonFiniteError, match=r"non-finite gradient in net\.0, net\.2 at epoch 0, step 2"
    ) as error:
        trainer.fit(NaNAtStep(feature_dim=4), TinyDataModule())
    checkpoint = tmp_path / "checkpoints" / "nonfinite-step2.ckpt"
    assert str(checkpoint) in str(error.value)
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values())


def test_casebook_fit_stops_on_nan_with_one_line_and_exit_code_3(cli_env, tmp_path):
    root = tmp_path / "run"
    result = casebook(
        "fit", "--model=tiny_task.NaNAtStep", "--data=tiny_task.TinyDataModule",
        "--data.num_features=3", "--trainer.max_steps=5", "--trainer.logger=false",
        "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={root}",
        "--trainer.callbacks+=callbacks.GradNormMonitor",
        env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    # Lightning's own info lines also go to stderr; casebook's message is one line among them
    errors = [line for line in result.stderr.splitlines() if line.startswith("casebook: error:")]
    checkpoint = root / "checkpoints" / "nonfinite-step2.ckpt"
    assert errors == [
        f"casebook: error: non-finite gradient in net.0, net.2 at epoch 0, step 2; checkpoint of "
        f"the last finite weights saved to {checkpoint}. Lower the learning rate, enable "
        "clipping, or set on_nonfinite=skip."
    ]
    assert checkpoint.is_file()


def test_nonfinite_skip_leaves_weights_unchanged_and_training_goes_on(tmp_path):
    monitor, probe = GradNormMonitor(on_nonfinite="skip"), GradientProbe()
    with pytest.warns(UserWarning, match="optimizer step skipped"):
        trainer_with(monitor, probe, max_steps=4, tmp_path=tmp_path).fit(
            NaNAtStep(feature_dim=4), TinyDataModule()
        )
    before, after = probe.parameters_after[1], probe.parameters_after[2]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert monitor.skipped_steps == 1
    assert len(probe.parameters_after) == 4
    assert all(torch.isfinite(p).all() for p in probe.parameters_after[-1])


def test_activation_stats_find_dead_relu_units_and_saturated_tanh(tmp_path):
    dead = TinyRegressor(feature_dim=4, hidden=8)
    with torch.no_grad():
        dead.net[0].bias.fill_(-1e3)  # every ReLU unit is off for every input
    monitor = GradNormMonitor(activation_every_n_steps=1)
    trainer_with(monitor, max_steps=1, tmp_path=tmp_path).fit(dead, TinyDataModule())
    assert monitor.last_activation_stats["net.1"]["dead"] == 1.0

    saturated = TinyRegressor(feature_dim=4, hidden=8, activation="tanh")
    with torch.no_grad():
        saturated.net[0].weight.mul_(1e3)
    monitor = GradNormMonitor(activation_every_n_steps=1)
    trainer_with(monitor, max_steps=1, tmp_path=tmp_path).fit(saturated, TinyDataModule())
    assert monitor.last_activation_stats["net.1"]["saturated"] > 0.9

    healthy = GradNormMonitor(activation_every_n_steps=1)
    trainer_with(healthy, max_steps=1, tmp_path=tmp_path).fit(
        TinyRegressor(feature_dim=4, hidden=8), TinyDataModule()
    )
    assert healthy.last_activation_stats["net.1"]["dead"] < 0.5


def test_activation_hooks_only_on_sampled_steps(tmp_path):
    model = TinyRegressor(feature_dim=4)
    monitor = GradNormMonitor(activation_every_n_steps=1000)

    class HookCounter(Callback):
        counts = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.counts.append(len(pl_module.net[0]._forward_hooks))

    counter = HookCounter()
    trainer_with(monitor, counter, max_steps=3, tmp_path=tmp_path).fit(model, TinyDataModule())
    assert counter.counts == [1, 0, 0]  # hooked at step 0 only
    assert not model.net[0]._forward_hooks
