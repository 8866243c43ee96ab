"""The video modules' training switches take effect: positional encodings, init, CNN norms,
label smoothing, Cutout and Mixup, bf16, gradient accumulation, BackboneFinetuning, EMA, SWA."""

import math

import pytest
import torch
from lightning.pytorch.callbacks import (
    BackboneFinetuning,
    Callback,
    EMAWeightAveraging,
    StochasticWeightAveraging,
)
from torch import nn

from datamodules.video import InstructionalVideoDataModule
from lightning_modules.video import ClipEncoders, ClipPretrainer, EncoderConfig, StepAligner
from lightning_modules.video.augment import cutout


@pytest.fixture(scope="module")
def align_batch(align_data):
    return next(iter(align_data.train_dataloader()))


@pytest.fixture(scope="module")
def pair_batch(pretrain_data):
    return next(iter(pretrain_data.train_dataloader()))


@pytest.fixture(scope="module")
def one_video_batches(align_data):
    """The tiny align data one video per batch: four training steps an epoch."""
    return InstructionalVideoDataModule(**{**align_data.hparams, "batch_size": 1})


@pytest.fixture
def aligner(tiny_encoder, data_links):
    def make(**options) -> StepAligner:
        torch.manual_seed(0)
        options = {
            "encoder": tiny_encoder,
            "hidden": 32,
            "layers": 1,
            "dropout": 0.0,
            "warmup_steps": 0,
            **options,
        }
        return StepAligner(**data_links, **options)

    return make


@pytest.fixture
def pretrainer(tiny_encoder, data_links):
    def make(**options) -> ClipPretrainer:
        torch.manual_seed(0)
        return ClipPretrainer(encoder=tiny_encoder, **data_links, **options)

    return make


# ------------------------------------------------------------------ the modules change


def test_positional_encoding_switch_changes_the_frame_codes_and_the_logits(align_batch, aligner):
    heads = {
        kind: aligner(positional_encoding=kind).head for kind in ("sinusoidal", "learned", "none")
    }
    assert isinstance(heads["learned"].frame_position, nn.Embedding)
    assert heads["sinusoidal"].frame_position is None
    assert torch.count_nonzero(heads["none"].absolute_positions(5, torch.device("cpu"))) == 0
    with torch.no_grad():
        sinusoidal = aligner(positional_encoding="sinusoidal").eval()(align_batch)["logits"]
        none = aligner(positional_encoding="none").eval()(align_batch)["logits"]
    assert not torch.allclose(sinusoidal, none)  # the same weights (seeded), other positions


def test_init_scheme_reinitializes_the_attend_align_head(aligner):
    layer = aligner(init="kaiming").head.step_key  # Linear(32, 32)
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / 32), rel=0.1)
    assert torch.count_nonzero(layer.bias) == 0


def test_cnn_norm_switch_builds_the_frame_encoder_with_that_norm_and_saves_it(
    tiny_encoder, data_links, tmp_path
):
    config = EncoderConfig(**{**vars(tiny_encoder), "cnn_norm": "group"})
    encoders = ClipEncoders.build(config, data_links["vocab_size"], data_links["pad_token_id"])
    kinds = {type(m) for m in encoders.frame_encoder.modules()}
    assert nn.GroupNorm in kinds and nn.BatchNorm2d not in kinds
    reloaded = ClipEncoders.load(encoders.save(tmp_path / "encoders"))
    assert any(isinstance(m, nn.GroupNorm) for m in reloaded.frame_encoder.modules())


# ------------------------------------------------------------------ the loss changes


def test_label_smoothing_changes_the_frame_loss(align_batch, aligner):
    plain, smoothed = aligner(), aligner(label_smoothing=0.2)
    with torch.no_grad():
        outputs = plain(align_batch)
        assert plain.loss(outputs, align_batch) != smoothed.loss(outputs, align_batch)


def test_cutout_erases_one_box_per_item_shared_by_the_frames_of_a_video():
    videos = torch.ones(3, 5, 3, 16, 16)  # (videos, frames, 3, H, W)
    erased = cutout(videos, prob=1.0)
    zeros = erased == 0
    assert zeros.any(dim=(1, 2, 3, 4)).all()  # every video has a box
    assert (zeros == zeros[:, :1]).all()  # the same box in each of its frames
    assert cutout(videos, prob=0.0) is videos


@pytest.mark.parametrize("option", [{"cutout_prob": 1.0}, {"mixup_alpha": 0.4}])
def test_cutout_and_mixup_change_the_pretraining_loss_in_training_only(
    option, pair_batch, pretrainer
):
    # eval mode: no dropout or batch statistics, so only the augmentation tells the two apart
    plain, augmented = pretrainer().eval(), pretrainer(**option).eval()
    torch.manual_seed(1)
    base = plain.training_step(pair_batch, 0)
    torch.manual_seed(1)
    assert augmented.training_step(pair_batch, 0) != base
    with torch.no_grad():  # validation and test see the frames as they are
        assert augmented.model_step(pair_batch)[0] == plain.model_step(pair_batch)[0]


def test_cutout_needs_frames(data_links, tiny_encoder):
    with pytest.raises(ValueError, match="cutout_prob needs frames"):
        ClipPretrainer(encoder=tiny_encoder, **{**data_links, "feature_dim": 8}, cutout_prob=0.5)


# ------------------------------------------------------------------ Lightning's switches


class AutocastProbe(Callback):
    def on_fit_start(self, trainer, pl_module) -> None:
        self.seen = []
        pl_module.encoders.frame_projection.register_forward_hook(
            lambda m, i, out: self.seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        )


@pytest.mark.parametrize("task", ["align", "pretrain"])
def test_bf16_mixed_trains_both_video_modules_under_cpu_autocast(
    task, align_data, pretrain_data, aligner, pretrainer, fit
):
    model, data = (aligner(), align_data) if task == "align" else (pretrainer(), pretrain_data)
    probe = AutocastProbe()
    trainer = fit(model, data, [probe], precision="bf16-mixed", limit_train_batches=1)
    assert probe.seen and all(on and dtype == torch.bfloat16 for on, dtype in probe.seen)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_gradient_accumulation_halves_the_optimizer_steps(one_video_batches, aligner, fit):
    assert fit(aligner(), one_video_batches).global_step == 4
    assert fit(aligner(), one_video_batches, accumulate_grad_batches=2).global_step == 2


class BackboneProbe(Callback):
    """At each epoch's start, after BackboneFinetuning: which backbone weights train, and the
    optimizer's parameter groups' rates."""

    def __init__(self) -> None:
        self.trained, self.lrs = [], []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        not_norms = [
            p
            for m in pl_module.backbone.modules()
            if not isinstance(m, nn.BatchNorm2d)
            for p in m.parameters(recurse=False)
        ]
        self.trained.append({p.requires_grad for p in not_norms})
        self.lrs.append([g["lr"] for g in trainer.optimizers[0].param_groups])


def test_backbone_finetuning_freezes_the_encoders_then_unfreezes_them_at_the_epoch(
    align_data, aligner, fit
):
    model = aligner(freeze_encoders=False, lr=1e-3, encoder_lr=1e-4, lr_schedule="constant")
    probe = BackboneProbe()
    fit(model, align_data, [BackboneFinetuning(unfreeze_backbone_at_epoch=1), probe], max_epochs=2)
    # BackboneFinetuning leaves BatchNorm layers trainable while it freezes the rest.
    assert probe.trained == [{False}, {True}]
    # the head's two groups and the BatchNorm group, then the backbone's at 0.1 x the head's rate
    assert probe.lrs == [[1e-3, 1e-3, 1e-4], [1e-3, 1e-3, 1e-4, pytest.approx(1e-4)]]
    assert not model.encoders.log_logit_scale.requires_grad  # the temperature is no backbone


class AverageDistance(Callback):
    def __init__(self, averaging) -> None:
        self.averaging, self.distances = averaging, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        averaged = self.averaging._average_model.module.head.background.weight
        self.distances.append((averaged - pl_module.head.background.weight).norm().item())


def test_ema_of_weights_trails_the_trained_weights(one_video_batches, aligner, fit):
    ema = EMAWeightAveraging(decay=0.9)
    distance = AverageDistance(ema)
    model = aligner()
    fit(model, one_video_batches, [ema, distance])
    assert distance.distances[0] == 0.0 and all(d > 0 for d in distance.distances[1:])
    assert torch.equal(
        model.head.background.weight, ema._average_model.module.head.background.weight
    )


def test_swa_averages_the_last_epochs_at_its_own_learning_rate(
    align_data, aligner, tiny_encoder, fit
):
    swa = StochasticWeightAveraging(swa_lrs=1e-4, swa_epoch_start=1, annealing_epochs=1)
    # GroupNorm: with BatchNorm SWA adds an epoch that recomputes the statistics
    model = aligner(encoder=EncoderConfig(**{**vars(tiny_encoder), "cnn_norm": "group"}))
    trainer = fit(model, align_data, [swa], max_epochs=3)
    assert int(swa.n_averaged) > 1
    assert all(g["lr"] == pytest.approx(1e-4) for g in trainer.optimizers[0].param_groups)
    averaged = swa._average_model.head.background.weight
    assert torch.equal(model.head.background.weight, averaged)
