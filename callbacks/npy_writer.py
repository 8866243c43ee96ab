"""NpyPredictionWriter: `casebook predict` writes each item's array as `<output_dir>/<item_id>.npy`.

The contract with the LightningModule: `predict_step` returns a mapping `{item_id: array}` (a
tensor or NumPy array per item, already without padding); each entry becomes one file, written
as the batch ends, so nothing accumulates in memory (pair it with `return_predictions: false`).

    trainer:
      callbacks:
        - class_path: callbacks.NpyPredictionWriter
          init_args: {output_dir: runs/clip_pretrainer/features}

Under DDP, Lightning's predict sampler gives every item to exactly one rank, and each rank writes
its own items; a file is written under a rank-private temporary name and renamed into place
(atomic on one filesystem), so a reader never sees half an array.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info


class NpyPredictionWriter(BasePredictionWriter):
    """Writes `predict_step`'s `{item_id: array}` as one `<output_dir>/<item_id>.npy` per item."""

    def __init__(self, output_dir: str | None = None) -> None:
        """
        Args:
            output_dir: folder of the .npy files, created if missing; existing files of the same
                ids are replaced (None: <default_root_dir>/predictions).
        """
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.written = 0

    def directory(self, trainer: Trainer) -> Path:
        return Path(self.output_dir or Path(trainer.default_root_dir) / "predictions")

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.directory(trainer).mkdir(parents=True, exist_ok=True)
        self.written = 0

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if not isinstance(prediction, Mapping):
            raise TypeError(
                f"NpyPredictionWriter needs predict_step to return {{item_id: array}}, "
                f"got {type(prediction).__name__}"
            )
        directory = self.directory(trainer)
        for item_id, value in prediction.items():
            name = str(item_id)
            if not name or Path(name).name != name or name.startswith("."):
                raise ValueError(f"NpyPredictionWriter: {name!r} cannot be a file name")
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu()
                if value.dtype == torch.bfloat16:  # NumPy has no bfloat16
                    value = value.float()
                value = value.numpy()
            temporary = directory / f".{name}.rank{trainer.global_rank}.tmp.npy"
            np.save(temporary, np.asarray(value))
            os.replace(temporary, directory / f"{name}.npy")
            self.written += 1

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_predict_epoch_end(trainer, pl_module)
        total = trainer.strategy.reduce(
            torch.tensor(float(self.written), device=pl_module.device), reduce_op="sum"
        )
        rank_zero_info(f"{int(total)} arrays written to {self.directory(trainer)}")
