import csv

import lightning as L
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny_task import TinyDataModule, TinyRegressor

from callbacks import ValidationCurve


class Recorder(Callback):
    """What the trainer held after each validation run, to compare the CSV with."""

    def __init__(self):
        self.rows = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.rows.append((trainer.global_step, float(trainer.callback_metrics["val/loss"])))


def fit(tmp_path, max_epochs, ckpt_path=None):
    recorder = Recorder()
    trainer = L.Trainer(
        max_epochs=max_epochs,
        callbacks=[
            ValidationCurve(),
            recorder,
            ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True),
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(TinyRegressor(feature_dim=4), TinyDataModule(), ckpt_path=ckpt_path)
    return recorder.rows


def curve(tmp_path) -> list[dict]:
    with (tmp_path / "reports" / "validation_curve.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def test_one_row_per_validation_with_the_logged_values_and_a_running_clock(tmp_path):
    seen = fit(tmp_path, max_epochs=3)
    rows = curve(tmp_path)
    assert [(int(r["step"]), float(r["val/loss"])) for r in rows] == seen  # sanity check excluded
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    minutes = [float(r["minutes"]) for r in rows]
    assert minutes == sorted(minutes) and minutes[0] >= 0


def test_a_resumed_fit_continues_the_curve_and_a_new_fit_starts_a_new_one(tmp_path):
    fit(tmp_path, max_epochs=2)
    first = curve(tmp_path)
    fit(tmp_path, max_epochs=4, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    resumed = curve(tmp_path)
    assert resumed[:2] == first
    assert [int(r["epoch"]) for r in resumed] == [0, 1, 2, 3]
    assert float(resumed[2]["minutes"]) >= float(first[1]["minutes"])

    fit(tmp_path, max_epochs=1)  # no checkpoint given: a new run
    assert [int(r["epoch"]) for r in curve(tmp_path)] == [0]


def test_a_resumed_fit_counts_on_from_the_checkpoints_training_minutes(tmp_path):
    fit(tmp_path, max_epochs=2)
    last = tmp_path / "ckpt" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    (key,) = [k for k in checkpoint["callbacks"] if "ValidationCurve" in k]
    checkpoint["callbacks"][key]["seconds"] = 6000.0  # as if 100 minutes had been trained
    torch.save(checkpoint, last)
    fit(tmp_path, max_epochs=3, ckpt_path=last)
    assert float(curve(tmp_path)[2]["minutes"]) >= 100


def test_rows_an_interrupted_run_wrote_after_its_checkpoint_are_dropped_on_resume(tmp_path):
    fit(tmp_path, max_epochs=2)
    path = tmp_path / "reports" / "validation_curve.csv"
    rows = curve(tmp_path)
    stray = dict(rows[-1], step=str(int(rows[-1]["step"]) + 100), epoch="9")
    with path.open("a", newline="") as file:
        csv.DictWriter(file, fieldnames=list(stray)).writerow(stray)
    fit(tmp_path, max_epochs=3, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert [int(r["epoch"]) for r in curve(tmp_path)] == [0, 1, 2]
