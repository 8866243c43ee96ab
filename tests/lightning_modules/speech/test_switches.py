"""The speech teacher's training switches take effect: SpecAugment's masks, init, weight-decay
groups, the schedule, bf16, gradient accumulation and BackboneFinetuning."""

import math
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import BackboneFinetuning, Callback, EMAWeightAveraging

from lightning_modules.common import lr_multiplier
from lightning_modules.speech import Wav2Vec2CTCRecipe, Wav2Vec2Distiller


@pytest.fixture
def fit(fit):
    """The shared quiet fit, two batches per epoch."""
    return lambda model, datamodule, callbacks=(), **options: fit(
        model, datamodule, callbacks, **{"limit_train_batches": 2, **options}
    )


@pytest.fixture
def teacher(teacher_args):
    def make(**options) -> Wav2Vec2CTCRecipe:
        torch.manual_seed(0)
        return Wav2Vec2CTCRecipe(**{**teacher_args, "warmup_steps": 0, **options})

    return make


def test_specaugment_masks_time_and_channels_in_training_only(teacher, batch):
    model = teacher(
        mask_time_prob=0.5, mask_time_length=2, mask_feature_prob=0.5, mask_feature_length=4
    )
    config = model.model.config
    assert (config.mask_feature_prob, config.mask_feature_length) == (0.5, 4)
    inputs = (batch["input_values"], batch["attention_mask"])
    model.train()
    assert not torch.equal(model(*inputs), model(*inputs))  # masks drawn anew each pass
    model.eval()
    assert torch.equal(model(*inputs), model(*inputs))


def test_init_scheme_reinitializes_the_linear_layers(teacher):
    layer = teacher(init="xavier").model.wav2vec2.encoder.layers[0].feed_forward.intermediate_dense
    fan_out, fan_in = layer.weight.shape  # 64 x 32
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.1)


def test_weight_decay_skips_biases_and_norms(teacher):
    model = teacher(weight_decay=0.1)
    model.trainer = SimpleNamespace(estimated_stepping_batches=10, callbacks=[])
    optimizer = model.configure_optimizers()["optimizer"]
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    norm_scale = model.model.wav2vec2.encoder.layer_norm.weight
    assert any(p is norm_scale for p in plain["params"])


class LearningRates(Callback):
    def __init__(self) -> None:
        self.lrs = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_lr_schedule_drives_the_optimizer_every_step(teacher, tiny_datamodule, fit):
    rates = LearningRates()
    fit(
        teacher(lr=1e-3, lr_schedule="cosine", warmup_steps=1),
        tiny_datamodule,
        [rates],
        limit_train_batches=3,
    )
    assert rates.lrs == pytest.approx([1e-3 * lr_multiplier("cosine", s, 3, 1) for s in range(3)])


class AutocastProbe(Callback):
    def on_fit_start(self, trainer, pl_module) -> None:
        self.seen = []
        pl_module.model.lm_head.register_forward_hook(
            lambda m, i, out: self.seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        )


def test_bf16_mixed_trains_the_teacher_under_cpu_autocast(teacher, tiny_datamodule, fit):
    probe = AutocastProbe()
    trainer = fit(
        teacher(), tiny_datamodule, [probe], precision="bf16-mixed", limit_train_batches=1
    )
    assert probe.seen and all(on and dtype == torch.bfloat16 for on, dtype in probe.seen)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_gradient_accumulation_halves_the_optimizer_steps(teacher, tiny_datamodule, fit):
    assert fit(teacher(), tiny_datamodule).global_step == 2
    assert fit(teacher(), tiny_datamodule, accumulate_grad_batches=2).global_step == 1


class BackboneProbe(Callback):
    def __init__(self) -> None:
        self.trained, self.groups = [], []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.trained.append({p.requires_grad for p in pl_module.backbone.parameters()})
        self.groups.append(len(trainer.optimizers[0].param_groups))


def test_backbone_finetuning_trains_the_ctc_head_first_then_the_whole_model(
    teacher, tiny_datamodule, fit
):
    model = teacher()
    assert model.backbone is model.model.wav2vec2
    probe = BackboneProbe()
    fit(
        model,
        tiny_datamodule,
        [BackboneFinetuning(unfreeze_backbone_at_epoch=1), probe],
        max_epochs=2,
        limit_train_batches=1,
    )
    assert probe.trained == [{False}, {True}]
    assert probe.groups == [2, 3]  # the head's weight and bias groups, then the backbone's


def test_ema_of_weights_replaces_the_trained_weights_at_the_end(teacher, tiny_datamodule, fit):
    ema = EMAWeightAveraging(decay=0.5)
    model = teacher()
    fit(model, tiny_datamodule, [ema], limit_train_batches=3)
    averaged = ema._average_model.module.model.lm_head.weight
    assert torch.equal(model.model.lm_head.weight, averaged)
    assert int(ema._average_model.n_averaged) == 3  # one update per optimizer step


def test_student_takes_spec_augment_the_schedule_and_decay_groups(teacher_dir):
    student = Wav2Vec2Distiller(
        teacher=str(teacher_dir), mask_feature_prob=0.2, lr_schedule="constant", warmup_steps=0
    )
    assert student.student.config.mask_feature_prob == 0.2
    assert student.teacher.config.mask_feature_prob == 0.0  # the teacher sees clean input
    student.trainer = SimpleNamespace(estimated_stepping_batches=10)
    setup = student.configure_optimizers()
    decayed, plain = setup["optimizer"].param_groups
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert setup["lr_scheduler"]["scheduler"].lr_lambdas[0](9) == 1.0  # constant: no decay
