import lightning as L
import pytest
import torch
from lightning.pytorch import Callback
from tiny_task import TinyDataModule, TinyRegressor
from torch.nn.utils import get_total_norm

from callbacks import AdaptiveGradClip, GradNormMonitor


class NormAfterClipping(Callback):
    def __init__(self):
        self.norms = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.norms.append(float(get_total_norm([p.grad for p in pl_module.parameters()])))


def fit(*callbacks, max_steps=12, tmp_path=None):
    L.seed_everything(0)
    trainer = L.Trainer(
        max_steps=max_steps,
        callbacks=list(callbacks),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(TinyRegressor(feature_dim=4, lr=0.01), TinyDataModule())
    return trainer


def test_clipped_norm_is_at_most_the_threshold_and_threshold_is_the_percentile(tmp_path):
    monitor, clipper, after = (
        GradNormMonitor(),
        AdaptiveGradClip(percentile=10),
        NormAfterClipping(),
    )
    thresholds = []

    class Threshold(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            thresholds.append(clipper.last_threshold)

    fit(monitor, clipper, after, Threshold(), tmp_path=tmp_path)
    assert clipper.clipped_steps > 0
    for norm, threshold in zip(after.norms, thresholds):
        assert norm <= threshold * (1 + 1e-5)
    expected = torch.quantile(torch.tensor(list(clipper.history)), 0.10).item()
    assert clipper.last_threshold == pytest.approx(expected)


def test_percentile_100_never_clips(tmp_path):
    monitor, clipper, after = (
        GradNormMonitor(),
        AdaptiveGradClip(percentile=100),
        NormAfterClipping(),
    )

    class Before(Callback):
        norms = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.norms.append(monitor.last_global_norm)

    before = Before()
    fit(monitor, before, clipper, after, tmp_path=tmp_path)
    assert clipper.clipped_steps == 0
    assert after.norms == pytest.approx(before.norms, rel=1e-6)


def test_history_survives_checkpoint_round_trip():
    clipper = AdaptiveGradClip(history_size=3)
    clipper.history.extend([1.0, 2.0, 3.0])
    clipper.steps, clipper.clipped_steps = 5, 2
    restored = AdaptiveGradClip(history_size=3)
    restored.load_state_dict(clipper.state_dict())
    assert list(restored.history) == [1.0, 2.0, 3.0] and restored.clipped_steps == 2
