"""One doctor visit: the options, the recipe's rehearsal, what the task supports, and the short
runs several checks read (each run once, when a check first asks for it)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from lightning.pytorch import LightningDataModule, LightningModule

from callbacks import GradNormMonitor
from casebook.doctor.harness import Rehearsal, first_batch, serving, training_on_fixed_batch
from casebook.doctor.probes import FirstStepsProbe, LossRecorder
from casebook.doctor.protocols import FitsFixedBatch

Run = TypeVar("Run")


@dataclass
class DoctorOptions:
    """How many steps the checks take, and where pass, warn and fail divide.

    Args:
        steps: optimizer steps fitting one fixed batch.
        overfit_factor: the single-batch loss passes when it falls this many times...
        overfit_fail_factor: ...and fails when it falls fewer (or rises): CTC's all-blank
            plateau, for one, is a healthy pause at 2-3x.
        lr_steps: steps of the learning-rate range test.
        lr_span: the range test sweeps from the configured rate / lr_span to the configured rate x 100.
        timed_steps: real training batches timed for throughput (after one warm-up batch).
        data_batches: training and validation batches scanned for NaN/inf.
        init_warn_factor: the initial loss warns when it is off by more than this factor.
        init_fail_factor: the initial loss fails when it is off by more than this factor.
        activation_warn_fraction: warn when a layer has more dead or saturated units than this.
        activation_fail_fraction: fail when a layer has more dead or saturated units than this.
        data_wait_warn_fraction: warn when waiting for data takes more of a step than this.
        memory_budget_mb: fail when peak memory exceeds this (None: 80% of RAM, 90% of a GPU).
    """

    steps: int = 100
    overfit_factor: float = 10.0
    overfit_fail_factor: float = 1.5
    lr_steps: int = 100
    lr_span: float = 1e4
    timed_steps: int = 5
    data_batches: int = 8
    init_warn_factor: float = 1.5
    init_fail_factor: float = 3.0
    activation_warn_fraction: float = 0.1
    activation_fail_fraction: float = 0.5
    data_wait_warn_fraction: float = 0.5
    memory_budget_mb: float | None = None


@dataclass
class SingleBatchRun:
    """``steps`` optimizer steps on the first training batch, repeated."""

    recorder: LossRecorder
    what: str  # the loss that was fitted: "training_step loss" or "fixed_batch_loss"


@dataclass
class FirstStepsRun:
    """The first real training steps (the real ``training_step``, even in fixed-batch mode)."""

    model: LightningModule
    probe: FirstStepsProbe


class Examination:
    """What the checks read: ``single_batch()`` and ``first_steps()`` run their training on first
    use and keep the result; a run that raised raises again for every check that reads it."""

    def __init__(
        self, rehearsal: Rehearsal, datamodule: LightningDataModule, options: DoctorOptions
    ) -> None:
        self.rehearsal = rehearsal
        self.datamodule = datamodule
        self.options = options
        model = rehearsal.pristine
        self.model_name = type(model).__name__
        self.manual = not model.automatic_optimization
        self.fixed_mode = self.manual and isinstance(model, FitsFixedBatch)
        # The thresholds of the run's own GradNormMonitor, when it has one.
        monitors = [c for c in rehearsal.outer.callbacks if isinstance(c, GradNormMonitor)]
        reference = monitors[0] if monitors else GradNormMonitor()
        self.explode_threshold = reference.explode_threshold
        self.vanish_threshold = reference.vanish_threshold
        self._runs: dict[str, Any] = {}

    def single_batch(self) -> SingleBatchRun:
        return self._once("single batch", self._fit_one_batch)

    def first_steps(self) -> FirstStepsRun:
        return self._once("first steps", self._train_first_steps)

    def _once(self, key: str, run: Callable[[], Run]) -> Run:
        if key not in self._runs:
            try:
                self._runs[key] = run()
            except Exception as error:
                self._runs[key] = error
        if isinstance(self._runs[key], Exception):
            raise self._runs[key]
        return self._runs[key]

    def _fit_one_batch(self) -> SingleBatchRun:
        steps, rehearsal = self.options.steps, self.rehearsal
        with rehearsal.fresh_model() as model, contextlib.ExitStack() as patches:
            fixed_step = None
            if self.fixed_mode:
                fixed_step = patches.enter_context(training_on_fixed_batch(model))
            recorder = LossRecorder(fixed_step)
            patches.enter_context(serving(self.datamodule, first_batch(self.datamodule), steps))
            rehearsal.trainer([recorder], steps).fit(model, datamodule=self.datamodule)
        what = "fixed_batch_loss" if fixed_step is not None else "training_step loss"
        return SingleBatchRun(recorder, what)

    def _train_first_steps(self) -> FirstStepsRun:
        probe = FirstStepsProbe(
            self.options.timed_steps + 1, self.explode_threshold, self.vanish_threshold
        )
        with self.rehearsal.fresh_model() as model:
            # max_steps only bounds the schedules the model builds; the probe ends the run
            self.rehearsal.trainer([probe], 10**6).fit(model, datamodule=self.datamodule)
        return FirstStepsRun(model, probe)
