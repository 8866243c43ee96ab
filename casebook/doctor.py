"""``casebook doctor``: a few minutes of checks on a recipe before a long run.

    casebook doctor --config configs/ppo_trader.yaml [--checks.steps 100] [--checks.lr_steps 100]

The same config files (and presets and overrides) as ``casebook fit``; the doctor builds the same
model and data and runs short trainings of its own on one device: fresh copies of the initial
model with the configured optimizer, precision and clipping, in a scratch directory, with no
logger, checkpoints, validation, configured callbacks or ``on_fit_end`` exports. It prints::

    check | status | measured | expected | note

exiting 1 if any check fails (0 on pass, warn and skip). The table is also written as JSON to
``<default_root_dir>/doctor.json``. The checks (Karpathy's "A recipe for training neural
networks", 2019, turned into numbers):

- initial loss: the first step's loss against what a model that knows nothing scores;
- overfit one batch: the loss of one fixed batch falls ``overfit_factor`` times in ``steps`` steps;
- learning rate: Lightning's ``Tuner.lr_find`` range test; fails when the configured rate is
  where the loss diverges, warns past the loss minimum or far below the steepest descent;
- gradient norms and activations on the first real training step (``callbacks.GradNormMonitor``):
  non-finite, exploding or vanishing layers; dead ReLU and saturated Tanh/Sigmoid units, and
  each layer's output scale;
- data: NaN/inf in the first batches, class balance, split leakage;
- throughput (batches/s, samples/s, share of time spent waiting for data) and peak memory.

Tasks opt into checks with small methods; a check a task does not support is reported as
``skip`` with the reason, never passed silently.

LightningModule (all optional):
- ``expected_initial_loss(batch) -> float | None``: the loss ``training_step`` (or
  ``fixed_batch_loss``) gives on ``batch`` for uninformative outputs (classification: ln of the
  number of classes); must not depend on the weights; None where the configuration has none.
- ``initial_statistics(batch) -> dict[str, tuple[float, float]]``: other (measured, expected)
  values known at initialization, e.g. a policy's entropy against ln(number of actions).
- ``fixed_batch(batch)`` and ``fixed_batch_loss(fixed) -> Tensor``: for manual optimization (RL),
  whose ``training_step`` gathers its own data: a batch to fit repeatedly and a differentiable loss
  on it, used by the single-batch overfit and the learning-rate range test instead of ``training_step``.

LightningDataModule (all optional):
- ``split_keys() -> dict[str, dict[str, set]]``: kind -> split -> the keys that must not be shared
  (dates, voices, sentences, video ids, held-out steps); any shared key fails.
- ``class_counts() -> dict[str, int]``: training examples per class.
- ``inspection_batches() -> dict[str, Any]``: label -> nested tensors to scan for NaN/inf, when the
  training batches do not hold what the model reads (an RL environment's market table).
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import logging
import math
import os
import resource
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.tuner import Tuner
from lightning.pytorch.utilities.data import extract_batch_size
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader, Dataset

from callbacks import GradNormMonitor

DYING = ("ReLU", "ReLU6")  # zero output and zero gradient below 0: a unit never positive is dead
BOUNDED = ("Tanh", "Sigmoid", "Hardtanh")  # "saturated": within the margin of a bound
RECORDED = ("Linear", "Conv1d", "Conv2d", "GELU", "GELUActivation", "SiLU", *DYING, *BOUNDED)
NEVER = 10**9  # a GradNormMonitor period that samples global step 0 only
LR_FINDER_BETA = 0.98  # the smoothing of Lightning's learning-rate finder (_LRCallback)
CHECKS = (
    "initial loss",
    "overfit one batch",
    "learning rate",
    "gradient norms",
    "activations",
    "data: non-finite",
    "data: class balance",
    "data: split leakage",
    "throughput",
    "peak memory",
)


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
class CheckResult:
    """One row of the table; ``values`` holds the raw numbers behind ``measured``, for the JSON."""

    check: str
    status: str  # pass | warn | fail | skip
    measured: str = ""
    expected: str = ""
    note: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class DoctorReport:
    model: str
    datamodule: str
    rows: list[CheckResult]

    @property
    def failed(self) -> bool:
        return any(row.status == "fail" for row in self.rows)

    def table(self) -> str:
        lines = [("check", "status", "measured", "expected", "note")]
        lines += [(r.check, r.status, r.measured, r.expected, r.note) for r in self.rows]
        widths = [max(len(line[i]) for line in lines) for i in range(4)]
        text = [
            " | ".join([*(cell.ljust(w) for cell, w in zip(line, widths)), line[4]]).rstrip()
            for line in lines
        ]
        text.insert(1, "-+-".join("-" * w for w in [*widths, 4]))
        return "\n".join(text)

    def summary(self) -> str:
        return ", ".join(
            f"{sum(r.status == status for r in self.rows)} {status}"
            for status in ("pass", "warn", "fail", "skip")
        )

    def as_json(self) -> dict:
        rows = [strict_json(asdict(row)) for row in self.rows]
        return {
            "model": self.model,
            "datamodule": self.datamodule,
            "failed": self.failed,
            "checks": rows,
        }


class DoctorTrainer(Trainer):
    """Lightning's Trainer, plus the method behind ``casebook doctor``."""

    doctor_report: DoctorReport | None = None

    def doctor(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        checks: DoctorOptions = DoctorOptions(),  # noqa: B008 (never mutated)
    ) -> DoctorReport:
        """Checks a recipe in minutes: initial loss, single-batch overfit, learning rate, gradients, data, speed.

        Args:
            model: the configured LightningModule.
            datamodule: the configured LightningDataModule.
            checks: how many steps the checks take and where pass, warn and fail divide.
        """
        if datamodule is None:
            raise ValueError("casebook doctor needs a datamodule (--data)")
        report = self.doctor_report = Doctor(self, model, datamodule, checks).run()
        path = Path(self.default_root_dir) / "doctor.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.as_json(), indent=2) + "\n")
        print(f"casebook doctor: {report.model} on {report.datamodule}")
        print(report.table())
        print(f"{report.summary()}; written to {path}")
        return report


# ---------------------------------------------------------------------------------- the runs


class _RepeatedBatch(Dataset):
    """One batch, ``length`` times (a DataLoader with ``batch_size=None`` hands it over as is)."""

    def __init__(self, batch: Any, length: int) -> None:
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        return self.batch


def _as_is(batch: Any) -> Any:
    return batch


def _nothing() -> None:
    pass


@contextlib.contextmanager
def serving(datamodule: LightningDataModule, batch: Any, length: int) -> Iterator[None]:
    """The datamodule's ``train_dataloader`` yields ``batch`` ``length`` times while inside;
    the datamodule itself stays attached, for modules that read it (an RL environment)."""
    loader = DataLoader(_RepeatedBatch(batch, length), batch_size=None, collate_fn=_as_is)
    datamodule.train_dataloader = lambda: loader
    try:
        yield
    finally:
        del datamodule.train_dataloader


class FixedBatchStep:
    """For a manual-optimization module, ``training_step`` becomes one optimizer step on
    ``fixed_batch_loss(fixed_batch(first batch))``. It also steps the schedulers (the
    learning-rate finder's ramp), which manual optimization leaves to ``training_step``."""

    def __init__(self, module: LightningModule) -> None:
        self.module = module
        self.fixed: Any = None
        module.training_step = self.training_step

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        module = self.module
        if self.fixed is None:
            self.fixed = module.fixed_batch(batch)
        optimizer = module.optimizers()
        optimizer = optimizer[0] if isinstance(optimizer, list) else optimizer
        loss = module.fixed_batch_loss(self.fixed)
        optimizer.zero_grad()
        module.manual_backward(loss)
        optimizer.step()
        for config in module.trainer.lr_scheduler_configs:
            config.scheduler.step()
        return loss.detach()


class LossRecorder(Callback):
    """Per-step losses, the configured learning rate, and the model's initial references."""

    def __init__(self, fixed_step: FixedBatchStep | None = None) -> None:
        self.fixed_step = fixed_step
        self.losses: list[float] = []
        self.configured_lr: float | None = None
        self.expected: float | None = None
        self.statistics: dict[str, tuple[float, float]] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        groups = [g for opt in trainer.optimizers for g in opt.param_groups if g["params"]]
        if groups:  # a warm-up scheduler has already scaled "lr"; "initial_lr" is the peak
            self.configured_lr = max(float(g.get("initial_lr", g["lr"])) for g in groups)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 0 and batch_idx == 0 and hasattr(pl_module, "initial_statistics"):
            with torch.no_grad():  # before the first update: these depend on the weights
                self.statistics = dict(pl_module.initial_statistics(batch))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            self.losses.append(float(loss.detach()))
        if len(self.losses) == 1 and hasattr(pl_module, "expected_initial_loss"):
            reference = self.fixed_step.fixed if self.fixed_step is not None else batch
            with torch.no_grad():
                expected = pl_module.expected_initial_loss(reference)
            self.expected = math.nan if expected is None else float(expected)


class FirstStepsProbe(GradNormMonitor):
    """GradNormMonitor on the first real training steps: keeps the per-layer gradient norms and
    the activation statistics of global step 0, watches later steps for non-finite or exploding
    norms, times every batch (the first is warm-up) and measures the peak memory."""

    def __init__(self, batches: int, explode_threshold: float, vanish_threshold: float) -> None:
        super().__init__(
            log_every_n_steps=NEVER,
            activation_every_n_steps=NEVER,
            activation_types=list(RECORDED),
            explode_threshold=explode_threshold,
            vanish_threshold=vanish_threshold,
            on_nonfinite="warn",
        )
        self.batches = batches
        self.initial_layer_norms: dict[str, float] = {}
        self.initial_global_norm: float | None = None
        self.largest_global_norm = 0.0
        self.nonfinite_step: int | None = None
        self.step_seconds: list[float] = []
        self.wait_seconds: list[float] = []
        self.samples: list[int] = []
        self._started = self._ended = None
        self.rss_before_mb = math.nan
        self.peak_mb: float | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        super().on_before_optimizer_step(trainer, pl_module, optimizer)
        norm = self.last_global_norm
        if norm is None:
            return
        if self.initial_global_norm is None:
            self.initial_global_norm, self.initial_layer_norms = norm, dict(self.last_layer_norms)
        if math.isfinite(norm):
            self.largest_global_norm = max(self.largest_global_norm, norm)
        elif self.nonfinite_step is None:
            self.nonfinite_step = trainer.global_step

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.rss_before_mb = current_rss_mb()
        reset_peak_memory(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        self._started = time.perf_counter()
        if self._ended is not None:
            self.wait_seconds.append(self._started - self._ended)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.step_seconds.append(time.perf_counter() - self._started)
        self.samples.append(batch_size(batch))
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._ended = time.perf_counter()
        if len(self.step_seconds) >= self.batches:
            trainer.should_stop = True

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.peak_mb = peak_memory_mb(pl_module.device)


def batch_size(batch: Any) -> int:
    """Samples in a batch, 0 when unknown (a scalar pacing index, as the RL task's)."""
    if isinstance(batch, torch.Tensor) and batch.dim() == 0:
        return 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(extract_batch_size(batch))
    except Exception:  # MisconfigurationException, RecursionError: nothing to count
        return 0


def current_rss_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def reset_peak_memory(device: torch.device) -> None:
    """CUDA: reset the allocator's peak; CPU (Linux): reset the process's peak RSS (VmHWM,
    which getrusage reports), else the peak is the process's since it started."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory_budget_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return 0.9 * torch.cuda.get_device_properties(device).total_memory / 2**20
    return 0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The doctor's own short runs print nothing: no Lightning banners, no warnings about
    worker counts or logging intervals, no GradNormMonitor warnings (the table reports them)."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PossibleUserWarning)
        for message in (
            "GradNormMonitor",
            ".*does not have many workers",
            "You passed in a `val_dataloader`",
            "Your `IterableDataset` has `__len__`",
        ):
            warnings.filterwarnings("ignore", message=message)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def first_batch(datamodule: LightningDataModule) -> Any:
    return next(iter(datamodule.train_dataloader()))


def grade(value: float, warn_above: float, fail_above: float) -> str:
    return "fail" if value > fail_above else "warn" if value > warn_above else "pass"


# ---------------------------------------------------------------------------------- the doctor


class Doctor:
    """Runs the checks on fresh copies of ``model``; ``run()`` returns the report."""

    def __init__(
        self,
        trainer: Trainer,
        model: LightningModule,
        datamodule: LightningDataModule,
        options: DoctorOptions,
    ) -> None:
        self.outer = trainer
        self.pristine = copy.deepcopy(model)
        self.datamodule = datamodule
        self.options = options
        self.manual = not model.automatic_optimization
        self.fixed_mode = self.manual and all(
            hasattr(model, name) for name in ("fixed_batch", "fixed_batch_loss")
        )
        # The thresholds of the run's own GradNormMonitor, when it has one.
        monitors = [c for c in trainer.callbacks if isinstance(c, GradNormMonitor)]
        reference = monitors[0] if monitors else GradNormMonitor()
        self.explode_threshold = reference.explode_threshold
        self.vanish_threshold = reference.vanish_threshold
        self.configured_lr: float | None = None
        self.scratch = ""

    def run(self) -> DoctorReport:
        with quiet(), tempfile.TemporaryDirectory(prefix="casebook-doctor-") as scratch:
            self.scratch = scratch
            self.datamodule.prepare_data()
            self.datamodule.setup("fit")
            rows = [
                *self._guarded(("initial loss", "overfit one batch"), self.single_batch),
                *self._guarded(("learning rate",), self.learning_rate),
                *self._guarded(CHECKS[3:5] + CHECKS[8:], self.first_steps),
                *self._guarded(("data: non-finite",), self.nonfinite_data),
                *self._guarded(("data: class balance",), self.class_balance),
                *self._guarded(("data: split leakage",), self.split_leakage),
            ]
        rows.sort(key=lambda row: CHECKS.index(row.check.split(" (")[0]))
        return DoctorReport(type(self.pristine).__name__, type(self.datamodule).__name__, rows)

    def _guarded(self, names: tuple[str, ...], check: Callable) -> list[CheckResult]:
        """A check that raises fails with the error: a broken recipe is what it looks for."""
        try:
            return check()
        except Exception as error:
            first = (str(error).strip().splitlines() or [""])[0][:160]
            note = f"raised {type(error).__name__}: {first}"
            return [CheckResult(name, "fail", note=note) for name in names]

    def _trainer(self, callbacks: list[Callback], max_steps: int) -> Trainer:
        """A short single-device run: the precision and clipping of the configured Trainer; no
        logger, checkpoints, validation, or configured callbacks."""
        outer = self.outer
        return Trainer(
            accelerator=outer.strategy.root_device.type,
            devices=1,
            precision=outer.precision,
            max_steps=max_steps,
            max_epochs=-1,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            gradient_clip_val=outer.gradient_clip_val,
            gradient_clip_algorithm=outer.gradient_clip_algorithm,
            accumulate_grad_batches=outer.accumulate_grad_batches,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=self.scratch,  # the finder's checkpoint, whatever a hook writes
            callbacks=callbacks,
        )

    def _copy(self) -> LightningModule:
        """A fresh copy of the initial model whose ``on_fit_end`` does nothing: the doctor's
        runs are rehearsals, they export nothing (a teacher, pretrained encoders)."""
        model = copy.deepcopy(self.pristine)
        model.on_fit_end = _nothing
        return model

    def _fresh(self) -> tuple[LightningModule, FixedBatchStep | None]:
        model = self._copy()
        return model, FixedBatchStep(model) if self.fixed_mode else None

    # ------------------------------------------------------------------ initial loss, overfit
    def single_batch(self) -> list[CheckResult]:
        if self.manual and not self.fixed_mode:
            note = "manual optimization without fixed_batch() and fixed_batch_loss()"
            return [CheckResult(name, "skip", note=note) for name in CHECKS[:2]]
        steps = self.options.steps
        model, fixed_step = self._fresh()
        recorder = LossRecorder(fixed_step)
        with serving(self.datamodule, first_batch(self.datamodule), steps):
            self._trainer([recorder], steps).fit(model, datamodule=self.datamodule)
        self.configured_lr = recorder.configured_lr
        if not recorder.losses:
            note = "training_step returned no loss (nothing trained)"
            return [CheckResult(name, "skip", note=note) for name in CHECKS[:2]]
        what = "fixed_batch_loss" if fixed_step is not None else "training_step loss"
        rows = [self._initial_row(recorder, what)]
        for name, (measured, expected) in recorder.statistics.items():
            rows.append(self._ratio_row(f"initial loss ({name})", measured, expected, "at init"))
        return [*rows, self._overfit_row(recorder.losses, what)]

    def _initial_row(self, recorder: LossRecorder, what: str) -> CheckResult:
        initial = f"{recorder.losses[0]:.4g}"
        if recorder.expected is None:
            note = f"{type(self.pristine).__name__} defines no expected_initial_loss()"
            return CheckResult("initial loss", "skip", initial, note=note)
        if math.isnan(recorder.expected):
            note = "expected_initial_loss() has no reference for this configuration"
            return CheckResult("initial loss", "skip", initial, note=note)
        return self._ratio_row("initial loss", recorder.losses[0], recorder.expected, what)

    def _ratio_row(self, check: str, measured: float, expected: float, what: str) -> CheckResult:
        opts = self.options
        shown = (f"{measured:.4g}", f"{expected:.4g}")
        values = {"measured": measured, "expected": expected}
        if not math.isfinite(measured):
            return CheckResult(check, "fail", *shown, f"{what} is not finite", values)
        if expected <= 0 or measured <= 0:
            return CheckResult(check, "warn", *shown, "not positive: no ratio to judge", values)
        factor = values["factor"] = max(measured / expected, expected / measured)
        status = grade(factor, opts.init_warn_factor, opts.init_fail_factor)
        side = "above" if measured > expected else "below"
        note = what if status == "pass" else f"{what}, {factor:.2g}x {side}"
        if status == "fail" and side == "above":
            note += ": check the initialization and the output scale"
        return CheckResult(check, status, *shown, note, values)

    def _overfit_row(self, losses: list[float], what: str) -> CheckResult:
        factor, fail_factor = self.options.overfit_factor, self.options.overfit_fail_factor
        initial, final = losses[0], float(np.median(losses[-5:]))
        values = {"initial": initial, "final": final, "steps": len(losses)}
        shown = (f"{initial:.4g} -> {final:.4g} in {len(losses)} steps", f"falls {factor:g}x")
        check = "overfit one batch"
        bad = [i for i, loss in enumerate(losses) if not math.isfinite(loss)]
        if bad:
            return CheckResult(check, "fail", *shown, f"non-finite loss at step {bad[0]}", values)
        if initial <= 0:
            return CheckResult(check, "warn", *shown, "initial loss not positive", values)
        fallen = values["factor"] = initial / final if final > 0 else math.inf
        status = "pass" if fallen >= factor else "warn" if fallen >= fail_factor else "fail"
        note = f"{what} fell {fallen:.3g}x"
        if status == "fail":
            note += ": it cannot fit one batch (a bug, the learning rate or the capacity)"
        return CheckResult(check, status, *shown, note, values)

    # ------------------------------------------------------------------ learning rate
    def learning_rate(self) -> list[CheckResult]:
        opts = self.options
        check = "learning rate"
        if self.manual and not self.fixed_mode:
            note = "manual optimization without fixed_batch() and fixed_batch_loss()"
            return [CheckResult(check, "skip", note=note)]
        configured = self.configured_lr
        if not configured:
            return [CheckResult(check, "skip", note="no optimizer with a learning rate")]
        model, _ = self._fresh()
        low, high = configured / opts.lr_span, configured * 100
        with contextlib.ExitStack() as stack:
            if self.fixed_mode:
                batch = first_batch(self.datamodule)
                stack.enter_context(serving(self.datamodule, batch, opts.lr_steps))
            stack.enter_context(contextlib.redirect_stderr(io.StringIO()))  # its progress bar
            finder = Tuner(self._trainer([], opts.lr_steps)).lr_find(
                model,
                datamodule=self.datamodule,
                min_lr=low,
                max_lr=high,
                num_training=opts.lr_steps,
                update_attr=False,
            )
        lrs, losses = finder.results["lr"], finder.results["loss"]
        # Lightning's finder divides its running mean by 1 - beta^(step + 1) counting the step
        # just taken twice, so its first losses read low (half, at the first step): undone here.
        beta = LR_FINDER_BETA
        losses = [
            loss * (1 - beta ** (i + 2)) / (1 - beta ** (i + 1)) for i, loss in enumerate(losses)
        ]
        curve = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
        if len(curve) < 3:
            note = "the loss is not finite from the lowest rates on"
            return [CheckResult(check, "fail", f"{len(curve)} finite losses", note=note)]
        skip = min(10, len(curve) // 5)  # the noisiest, as Lightning's suggestion() does
        steepest = steepest_descent(curve, skip)
        lowest = min(curve[skip:], key=lambda point: point[1])[0]
        # Lightning's finder stops once the smoothed loss exceeds 4x its best: divergence.
        diverged = lrs[-1] if len(lrs) < opts.lr_steps else None
        values = {
            "configured": configured,
            "steepest": steepest,
            "lowest_loss_lr": lowest,
            "diverges_at": diverged,
            "range": [low, high],
        }
        measured = f"configured {configured:.2g}; steepest {steepest:.2g}, min loss {lowest:.2g}, "
        measured += f"diverges {diverged:.2g}" if diverged else f"no divergence to {high:.2g}"
        shown = (measured, "configured < divergence")
        on = " on fixed_batch_loss" if self.fixed_mode else ""
        if diverged is not None and configured >= diverged:
            note = f"the loss diverges at the configured rate{on}: lower it"
            return [CheckResult(check, "fail", *shown, note, values)]
        if configured > lowest:
            note = f"the configured rate is past the range test's loss minimum{on}"
            return [CheckResult(check, "warn", *shown, note, values)]
        if configured < steepest / 100:
            note = f"the configured rate is below 1/100 of the steepest descent{on}"
            return [CheckResult(check, "warn", *shown, note, values)]
        return [CheckResult(check, "pass", *shown, f"Tuner.lr_find{on}", values)]

    # ------------------------------------------------------------------ first real steps
    def first_steps(self) -> list[CheckResult]:
        model = self._copy()  # the real training_step, even in fixed-batch mode
        probe = FirstStepsProbe(
            self.options.timed_steps + 1, self.explode_threshold, self.vanish_threshold
        )
        # max_steps only bounds the schedules the model builds; the probe ends the run
        self._trainer([probe], 10**6).fit(model, datamodule=self.datamodule)
        return [
            self._gradient_row(probe),
            self._activation_row(model, probe),
            self._throughput_row(probe),
            self._memory_row(model, probe),
        ]

    def _gradient_row(self, probe: FirstStepsProbe) -> CheckResult:
        check = "gradient norms"
        if probe.initial_global_norm is None:
            return CheckResult(check, "skip", note="no optimizer step took gradients")
        layers = probe.initial_layer_norms
        values = {"global": probe.initial_global_norm, "layers": layers}
        expected = f"finite, per layer {self.vanish_threshold:g}..{self.explode_threshold:g}"
        if probe.nonfinite_step is not None:
            note = f"NaN/inf gradient at step {probe.nonfinite_step}"
            return CheckResult(check, "fail", "non-finite", expected, note, values)
        low, high = min(layers, key=layers.get), max(layers, key=layers.get)
        shown = (
            f"global {probe.initial_global_norm:.3g}; layers {layers[low]:.2g} ({low}) .. "
            f"{layers[high]:.2g} ({high}), {len(layers)} layers",
            expected,
        )
        exploding = [k for k, v in layers.items() if v > self.explode_threshold]
        vanishing = [k for k, v in layers.items() if v < self.vanish_threshold]
        if exploding:
            note = f"exploding at step 0: {', '.join(exploding[:3])}"
            return CheckResult(check, "fail", *shown, note, values)
        if probe.largest_global_norm > self.explode_threshold:
            note = f"the global norm reached {probe.largest_global_norm:.3g} in the first steps"
            return CheckResult(check, "fail", *shown, note, values)
        if vanishing:
            note = f"vanishing at step 0: {', '.join(vanishing[:3])}"
            return CheckResult(check, "warn", *shown, note, values)
        return CheckResult(check, "pass", *shown, "first training step", values)

    def _activation_row(self, model: LightningModule, probe: FirstStepsProbe) -> CheckResult:
        opts = self.options
        check = "activations"
        stats = probe.last_activation_stats
        if not stats:
            return CheckResult(check, "skip", note=f"no {', '.join(RECORDED[:4])}, ... module ran")
        kinds = {name: type(module).__name__ for name, module in model.named_modules()}
        dead = {k: s["dead"] for k, s in stats.items() if kinds.get(k) in DYING}
        saturated = {k: s["saturated"] for k, s in stats.items() if "saturated" in s}
        spread = {k: s["std"] for k, s in stats.items()}
        low, high = min(spread, key=spread.get), max(spread, key=spread.get)
        parts = [f"std {spread[low]:.2g} ({low}) .. {spread[high]:.2g} ({high})"]
        worst: list[tuple[float, str, str]] = []
        for label, fractions in (("dead", dead), ("saturated", saturated)):
            if fractions:
                layer = max(fractions, key=fractions.get)
                worst.append((fractions[layer], label, layer))
                parts.append(f"{label} <= {fractions[layer]:.0%} ({layer})")
        values = {"std": spread, "dead": dead, "saturated": saturated}
        shown = (
            "; ".join(parts) + f"; {len(stats)} layers",
            f"dead, saturated <= {opts.activation_warn_fraction:.0%}",
        )
        if worst:
            fraction, label, layer = max(worst)
            status = grade(fraction, opts.activation_warn_fraction, opts.activation_fail_fraction)
            if status != "pass":
                note = f"{fraction:.0%} of {layer}'s units are {label} on the first batch"
                return CheckResult(check, status, *shown, note, values)
        if spread[high] > 1e3:
            note = f"{high}'s outputs have std {spread[high]:.3g}: check the initialization"
            return CheckResult(check, "warn", *shown, note, values)
        note = "first training batch" + ("" if worst else "; no ReLU, Tanh or Sigmoid module")
        return CheckResult(check, "pass", *shown, note, values)

    def _throughput_row(self, probe: FirstStepsProbe) -> CheckResult:
        check = "throughput"
        steps, waits = probe.step_seconds[1:], probe.wait_seconds  # the first batch is warm-up
        if not steps:
            return CheckResult(check, "skip", note="fewer than two training batches ran")
        total = sum(steps) + sum(waits)
        per_second, wait = len(steps) / total, sum(waits) / total
        samples = sum(probe.samples[1:])
        values = {
            "batches_per_second": per_second,
            "samples_per_second": samples / total,
            "data_wait": wait,
        }
        measured = f"{per_second:.3g} batches/s"
        measured += f", {samples / total:.4g} samples/s" if samples else ""
        measured += f"; data wait {wait:.0%}"
        note = f"{len(steps)} batches after a warm-up one"
        if batches := self._full_run_batches():
            values["full_run_seconds"] = batches / per_second
            note += f"; the configured run ~{duration(batches / per_second)} ({batches} batches)"
        shown = (measured, f"data wait <= {self.options.data_wait_warn_fraction:.0%}")
        if wait > self.options.data_wait_warn_fraction:
            note = "waiting for data (more num_workers?); " + note
            return CheckResult(check, "warn", *shown, note, values)
        return CheckResult(check, "pass", *shown, note, values)

    def _full_run_batches(self) -> int | None:
        outer = self.outer
        if outer.max_steps and outer.max_steps > 0:
            return None if self.manual else outer.max_steps  # manual: steps are not batches
        if not (outer.max_epochs and outer.max_epochs > 0):
            return None
        with contextlib.suppress(TypeError):  # an unsized loader
            return len(self.datamodule.train_dataloader()) * outer.max_epochs
        return None

    def _memory_row(self, model: LightningModule, probe: FirstStepsProbe) -> CheckResult:
        check = "peak memory"
        if probe.peak_mb is None:
            return CheckResult(check, "skip", note="no training step ran")
        budget = self.options.memory_budget_mb or memory_budget_mb(model.device)
        values = {"peak_mb": probe.peak_mb, "budget_mb": budget}
        if model.device.type == "cuda":
            measured = f"{probe.peak_mb:.0f} MB CUDA allocated"
        else:
            grown = max(0.0, probe.peak_mb - probe.rss_before_mb)
            measured = f"{probe.peak_mb:.0f} MB RSS (+{grown:.0f} MB in training)"
        shown = (measured, f"<= {budget:.0f} MB")
        if probe.peak_mb > budget:
            return CheckResult(check, "fail", *shown, "over the memory budget", values)
        return CheckResult(check, "pass", *shown, "first training steps", values)

    # ------------------------------------------------------------------ data
    def nonfinite_data(self) -> list[CheckResult]:
        check = "data: non-finite"
        n, datamodule = self.options.data_batches, self.datamodule
        if hasattr(datamodule, "inspection_batches"):
            batches, source = dict(datamodule.inspection_batches()), "inspection_batches()"
        else:
            loaders = {"train": datamodule.train_dataloader()}
            with contextlib.suppress(Exception):  # no validation data
                loaders["val"] = datamodule.val_dataloader()
            batches = {
                f"{split} batch {i}": batch
                for split, loader in loaders.items()
                for i, batch in enumerate(itertools.islice(loader, n))
            }
            source = f"first {n} batches of {' and '.join(loaders)}"
        scanned, found = 0, {}
        for label, batch in batches.items():
            for key, tensor in floating_tensors(batch):
                scanned += tensor.numel()
                if bad := int((~torch.isfinite(tensor)).sum()):
                    found[f"{label} {key}".strip()] = bad
        values = {"values_scanned": scanned, "nonfinite": found}
        if not scanned:
            return [CheckResult(check, "skip", note=f"no floating-point values in the {source}")]
        shown = (f"{sum(found.values())} of {scanned:,} values", "0")
        if found:
            note = "NaN/inf in " + ", ".join(
                f"{where} ({n})" for where, n in list(found.items())[:3]
            )
            return [CheckResult(check, "fail", *shown, note, values)]
        return [CheckResult(check, "pass", *shown, source, values)]

    def class_balance(self) -> list[CheckResult]:
        check = "data: class balance"
        if not hasattr(self.datamodule, "class_counts"):
            note = f"{type(self.datamodule).__name__} defines no class_counts()"
            return [CheckResult(check, "skip", note=note)]
        counts = {str(k): int(v) for k, v in self.datamodule.class_counts().items()}
        present = {k: v for k, v in counts.items() if v > 0}
        missing = [k for k, v in counts.items() if v == 0]
        values = {"counts": counts}
        if len(present) <= 1:
            shown = (f"{len(present)} of {len(counts)} classes occur", "2+ classes")
            note = f"the training labels hold one class ({', '.join(present) or 'none'})"
            return [CheckResult(check, "fail", *shown, note, values)]
        total = sum(present.values())
        common, rare = max(present, key=present.get), min(present, key=present.get)
        shares = f"{common!r} {present[common] / total:.1%} .. {rare!r} {present[rare] / total:.2%}"
        if present[common] == present[rare]:
            shares = f"each {present[common] / total:.1%}"
        shown = (f"{len(present)}/{len(counts)} classes; {shares}", "every class, max/min <= 1000")
        if missing:
            note = f"{len(missing)} never occur in training: {', '.join(map(repr, missing[:5]))}"
            return [CheckResult(check, "warn", *shown, note, values)]
        if (ratio := present[common] / present[rare]) > 1000:
            note = f"commonest/rarest = {ratio:.3g}: weight the loss or resample"
            return [CheckResult(check, "warn", *shown, note, values)]
        return [CheckResult(check, "pass", *shown, "training split", values)]

    def split_leakage(self) -> list[CheckResult]:
        check = "data: split leakage"
        if not hasattr(self.datamodule, "split_keys"):
            note = f"{type(self.datamodule).__name__} defines no split_keys()"
            return [CheckResult(check, "skip", note=note)]
        parts, leaks, values = [], [], {}
        for kind, splits in self.datamodule.split_keys().items():
            shared_count = 0
            for a, b in itertools.combinations(splits, 2):
                shared = set(splits[a]) & set(splits[b])
                shared_count += len(shared)
                if shared:
                    examples = ", ".join(map(str, sorted(shared, key=str)[:3]))
                    leaks.append(f"{kind} {a}/{b}: {len(shared)} shared ({examples})")
            sizes = {split: len(keys) for split, keys in splits.items()}
            parts.append(f"{kind}: {shared_count} shared of {'/'.join(map(str, sizes.values()))}")
            values[kind] = {"shared": shared_count, "sizes": sizes}
        shown = ("; ".join(parts), "disjoint")
        if leaks:
            return [CheckResult(check, "fail", *shown, "; ".join(leaks[:3]), values)]
        return [CheckResult(check, "pass", *shown, "split_keys()", values)]


def strict_json(value: Any) -> Any:
    """NaN and infinities as strings ("inf"), which strict JSON readers accept."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    return value


def steepest_descent(curve: list[tuple[float, float]], skip_begin: int = 10) -> float:
    """The rate where the range test's loss falls fastest per decade. Hand-written because
    Lightning's ``suggestion()`` differentiates with respect to the rate itself, which on an
    exponential sweep favours the noise of the first, closely spaced rates."""
    lrs = np.log10([lr for lr, _ in curve])
    slopes = np.gradient(np.array([loss for _, loss in curve]), lrs)[skip_begin:-1]
    return float(10 ** lrs[skip_begin + int(np.argmin(slopes))])


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2g} s"
    return f"{seconds / 60:.3g} min" if seconds < 3600 else f"{seconds / 3600:.3g} h"


def floating_tensors(batch: Any, key: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(path, tensor) of every floating-point tensor or array in a nested batch."""
    if isinstance(batch, torch.Tensor):
        if batch.is_floating_point():
            yield key, batch.detach()
    elif isinstance(batch, np.ndarray):
        if np.issubdtype(batch.dtype, np.floating):
            yield key, torch.from_numpy(batch)
    elif isinstance(batch, Mapping):
        for name, value in batch.items():
            yield from floating_tensors(value, f"{key}.{name}" if key else str(name))
    elif isinstance(batch, list | tuple):
        for i, value in enumerate(batch):
            yield from floating_tensors(value, f"{key}[{i}]")
