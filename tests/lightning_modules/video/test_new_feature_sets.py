"""The aligner's defaults on a new feature set (issue 14, item 3): fresh encoders train, feature
noise regularizes, and the shipped config's early stopping on val/miou ends a fit by itself."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, Timer

from casebook.cli import CasebookCLI
from datamodules.video import InstructionalVideoDataModule
from datamodules.video.feature_sets import FeatureSetSpec, write_feature_set
from lightning_modules.video import EncoderConfig, StepAligner
from lightning_modules.video.augment import add_feature_noise

REPO = Path(__file__).resolve().parents[3]
TINY_SET = FeatureSetSpec(videos=12, feature_dim=8, min_steps=2, max_steps=3, max_gap_frames=4)
TINY_MODEL = [
    "--model.hidden=16", "--model.layers=1", "--model.heads=2",
    "--model.encoder.text_hidden=16", "--model.encoder.text_layers=1",
    "--model.encoder.text_heads=2", "--model.encoder.embed_dim=16",
    "--model.encoder.feature_hidden=16",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> tuple[Path, Path]:
    return write_feature_set(tmp_path_factory.mktemp("set"), TINY_SET, seed=0)


def test_feature_noise_perturbs_real_frames_by_the_asked_share_of_their_norm():
    torch.manual_seed(0)
    features = torch.randn(4, 50, 32) * 3.0
    mask = torch.arange(50)[None] < torch.tensor([50, 40, 30, 20])[:, None]
    noisy = add_feature_noise(features, mask, 0.5)
    noise = (noisy - features).norm(dim=-1)
    assert torch.equal(noisy[~mask], features[~mask])  # padding untouched
    mean_norm = features.norm(dim=-1)[mask].mean()
    assert noise[mask].mean() / mean_norm == pytest.approx(0.5, rel=0.05)
    assert not torch.equal(add_feature_noise(features, mask, 0.5), noisy)  # new noise each call
    assert add_feature_noise(features, mask, 0.0) is features


def test_fresh_encoders_train_at_the_heads_rate_by_default(tiny_set):
    annotations, features_dir = tiny_set
    data = InstructionalVideoDataModule(
        source="features", annotations=str(annotations), features_dir=str(features_dir)
    )
    model = StepAligner(
        pretrained=None,
        freeze_encoders=None,  # the shipped config's: fixed when pretrained, trained when fresh
        encoder=EncoderConfig(text_hidden=16, text_layers=1, text_heads=2, embed_dim=16),
        vocab_size=data.vocab_size,
        pad_token_id=data.pad_token_id,
        feature_dim=data.feature_dim,
        hidden=16,
        layers=1,
        lr=3e-3,
    )
    assert not model.frozen and model.hparams.freeze_encoders is False
    assert all(p.requires_grad for p in model.encoders.frame_encoder.parameters())
    assert model.encoders.training

    class Trainer:  # what configure_optimizers reads of its trainer
        estimated_stepping_batches = 100
        callbacks = []

    model._trainer = Trainer()
    optimizer = model.configure_optimizers()["optimizer"]
    assert {group["initial_lr"] for group in optimizer.param_groups} == {3e-3}  # peak rates
    encoder_params = {id(p) for p in model.encoders.parameters() if p.requires_grad}
    assert encoder_params <= {id(p) for g in optimizer.param_groups for p in g["params"]}


def test_the_shipped_configs_early_stopping_on_val_miou_ends_a_fit(tiny_set, tmp_path):
    annotations, features_dir = tiny_set
    # lr 0: val/miou never improves after the first epoch, so the config's patience decides
    # when the fit ends; max_epochs is only a safety net against a hang of max_time (6 min).
    cli = CasebookCLI(
        args=[
            "fit", "--config", str(REPO / "configs/step_aligner.yaml"),
            "--config", str(REPO / "configs/presets/csv.yaml"),
            "--model.pretrained=null", "--data.source=features",
            f"--data.annotations={annotations}", f"--data.features_dir={features_dir}",
            f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--trainer.max_epochs=60",
            "--model.lr=0", "--model.timeline_videos=0", *TINY_MODEL,
        ]
    )  # fmt: skip
    trainer = cli.trainer
    (stopper,) = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    assert stopper.monitor == "val/miou" and stopper.mode == "max"
    assert any(isinstance(c, Timer) for c in trainer.callbacks)  # the config's max_time
    assert stopper.stopped_epoch == stopper.patience  # no improvement after epoch 0
    assert trainer.current_epoch == stopper.patience + 1 < 60
    assert trainer.should_stop
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
