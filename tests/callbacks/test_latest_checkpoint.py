"""`last.ckpt` is the latest state even when the monitored metric got worse (Lightning 2.6's own
`save_last` would leave it at the best epoch)."""

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny_task import TinyDataModule, TinyRegressor

from callbacks import LatestCheckpoint


class WorseEveryEpoch(TinyRegressor):
    def on_validation_epoch_end(self) -> None:
        self.log("val/score", float(self.current_epoch))  # lower is better: epoch 0 is the best


def test_last_checkpoint_is_the_latest_epoch_and_best_stays_best(tmp_path):
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val/score", mode="min", filename="best")
    latest = LatestCheckpoint(dirpath=tmp_path)
    trainer = L.Trainer(
        max_epochs=3, callbacks=[best, latest], logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(WorseEveryEpoch(feature_dim=4), TinyDataModule(num_features=4))
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == trainer.global_step
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["epoch"] == 0
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    # both states travel in every checkpoint under distinct keys, so `--ckpt_path best` can read it
    keys = list(last["callbacks"])
    assert any(k.startswith("ModelCheckpoint") for k in keys)
    assert any(k.startswith("LatestCheckpoint") for k in keys)
