"""ValidationCurve: every validation's metrics against the step and the wall clock, as a CSV.

A recipe trained by time (``--trainer.max_time``) is judged by its curve of error against
minutes. W&B has it, but offline it sits in a binary run file; this writes it where anyone can
read it: ``<default_root_dir>/reports/validation_curve.csv``, one row per validation run (sanity
checks excluded), columns ``step``, ``epoch``, ``minutes`` (since training began, start-up
excluded) and each logged metric whose name starts with ``prefix``.

A resumed fit keeps the rows up to its checkpoint's step, drops any the interrupted run wrote
after it, and goes on counting minutes from the checkpoint's. A new fit in the same folder starts
a new file. Only rank 0 writes.

    trainer:
      callbacks:
        - class_path: callbacks.ValidationCurve
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class ValidationCurve(Callback):
    """Writes ``step, epoch, minutes, <prefix>*`` after every validation run."""

    def __init__(
        self, filename: str = "reports/validation_curve.csv", prefix: str = "val/"
    ) -> None:
        """
        Args:
            filename: the CSV's path, relative to ``trainer.default_root_dir`` unless absolute.
            prefix: which logged metrics become columns.
        """
        self.filename = filename
        self.prefix = prefix
        self._seconds_before = 0.0  # training time before this process: restored on resume
        self._resumed = False
        self._started: float | None = None

    def path(self, trainer: Trainer) -> Path:
        return Path(trainer.default_root_dir) / self.filename

    def seconds(self) -> float:
        running = time.monotonic() - self._started if self._started is not None else 0.0
        return self._seconds_before + running

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._started = time.monotonic()
        path = self.path(trainer)
        if not trainer.is_global_zero or not path.exists():
            return
        if not self._resumed:
            path.unlink()  # a new fit: a new curve
            return
        with path.open(newline="") as file:
            reader = csv.DictReader(file)
            fields = reader.fieldnames or []
            kept = [row for row in reader if int(row["step"]) <= trainer.global_step]
        self._write(path, fields, kept, mode="w")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self._started is None:
            return
        metrics = {
            name: float(value)
            for name, value in sorted(trainer.callback_metrics.items())
            if name.startswith(self.prefix) and value.numel() == 1
        }
        row = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "minutes": round(self.seconds() / 60, 3),
        } | metrics
        path = self.path(trainer)
        if path.exists():
            with path.open(newline="") as file:
                fields = next(csv.reader(file), None) or list(row)
            self._write(path, fields, [row], mode="a")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write(path, list(row), [row], mode="w")

    @staticmethod
    def _write(path: Path, fields: list[str], rows: list[dict], mode: str) -> None:
        with path.open(mode, newline="") as file:
            writer = csv.DictWriter(file, fieldnames=fields, extrasaction="ignore", restval="")
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._seconds_before = float(state_dict["seconds"])
        self._resumed = True
