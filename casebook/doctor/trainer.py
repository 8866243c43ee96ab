"""``DoctorTrainer``: Lightning's Trainer plus ``doctor``, the method ``casebook doctor`` calls."""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch import LightningDataModule, LightningModule, Trainer

from casebook.doctor.checks import examine, selected
from casebook.doctor.examination import DoctorOptions
from casebook.doctor.report import DoctorReport


class DoctorTrainer(Trainer):
    """Lightning's Trainer, plus the method behind ``casebook doctor``."""

    doctor_report: DoctorReport | None = None

    def doctor(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        checks: DoctorOptions = DoctorOptions(),  # noqa: B008 (never mutated)
        only: str | list[str] | None = None,
    ) -> DoctorReport:
        """Checks a recipe in minutes: initial loss, single-batch overfit, learning rate, gradients, data, speed.

        Args:
            model: the configured LightningModule.
            datamodule: the configured LightningDataModule.
            checks: how many steps the checks take and where pass, warn and fail divide.
            only: the checks to run, comma-separated (initial_loss, overfit_one_batch,
                learning_rate, gradient_norms, activations, nonfinite_data, class_balance,
                split_leakage, throughput, peak_memory); None runs them all.
        """
        names = selected(only)  # before any run: an unknown name stops in one line
        if datamodule is None:
            raise ValueError("casebook doctor needs a datamodule (--data)")
        report = self.doctor_report = examine(self, model, datamodule, checks, names)
        path = Path(self.default_root_dir) / "doctor.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.as_json(), indent=2) + "\n")
        print(f"casebook doctor: {report.model} on {report.datamodule}")
        print(report.table())
        print(f"{report.summary()}; written to {path}")
        return report
