import lightning as L
import pytest
import torch
from lightning.pytorch import Callback
from tiny_task import TinyDataModule, TinyRegressor

from callbacks import TrainValidSkew


class ScriptedMetrics(TinyRegressor):
    """Logs train/score = epoch + 1 and val/score = scripted values, so the skew is known by hand."""

    def __init__(self, val_scores, **kwargs):
        super().__init__(**kwargs)
        self.val_scores = val_scores

    def training_step(self, batch, batch_idx):
        self.log("train/score", float(self.current_epoch + 1), on_epoch=True, on_step=False)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        if not self.trainer.sanity_checking:
            self.log("val/score", self.val_scores[self.current_epoch], on_epoch=True)


class Recorder(Callback):
    def __init__(self):
        self.rows = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.rows.append({k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k})


def run(val_scores, skew, max_epochs, tmp_path):
    recorder = Recorder()
    trainer = L.Trainer(
        max_epochs=max_epochs,
        callbacks=[skew, recorder],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(ScriptedMetrics(val_scores, feature_dim=4), TinyDataModule())
    return trainer, recorder.rows


def test_gap_ratio_and_change_equal_hand_computed_values(tmp_path):
    val_scores = [0.5, 1.0, 2.5]
    trainer, rows = run(val_scores, TrainValidSkew(metrics=["score"]), 3, tmp_path)
    for epoch, row in enumerate(rows):
        train = epoch + 1.0
        assert row["skew/score_gap"] == pytest.approx(train - val_scores[epoch])
        assert row["skew/score_ratio"] == pytest.approx(val_scores[epoch] / train)
        if epoch:
            assert row["consistency/train_score_change"] == pytest.approx(1.0)
            assert row["consistency/val_score_change"] == pytest.approx(
                val_scores[epoch] - val_scores[epoch - 1]
            )


def test_stops_when_gap_grows_for_patience_epochs(tmp_path):
    val_scores = [1.0] * 10  # train climbs by one each epoch: the gap grows every epoch
    with pytest.warns(UserWarning, match="has grown for 2 epochs in a row"):
        trainer, rows = run(
            val_scores, TrainValidSkew(metrics=["score"], patience=2, action="stop"), 10, tmp_path
        )
    assert trainer.current_epoch == 3  # epochs 0,1,2 ran; growth seen at 1 and 2 -> stop


def test_no_skew_logged_for_epochs_without_validation(tmp_path):
    recorder = Recorder()
    trainer = L.Trainer(
        max_epochs=2,
        check_val_every_n_epoch=2,
        callbacks=[TrainValidSkew(metrics=["score"]), recorder],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    trainer.fit(ScriptedMetrics([0.0, 0.25], feature_dim=4), TinyDataModule())
    assert "skew/score_gap" not in recorder.rows[0]
    assert recorder.rows[1]["skew/score_gap"] == pytest.approx(2.0 - 0.25)
    assert torch.isfinite(torch.tensor(recorder.rows[1]["skew/score_ratio"]))
