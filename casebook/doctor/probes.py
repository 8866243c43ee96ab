"""What the doctor's short runs measure: callbacks that record losses, gradients, activations and
time, and the operating system's memory counters."""

from __future__ import annotations

import contextlib
import math
import os
import resource
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.data import extract_batch_size
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from callbacks import GradNormMonitor
from casebook.doctor.harness import FixedBatchStep
from casebook.doctor.protocols import ExpectsInitialLoss, ReportsInitialStatistics

DYING = ("ReLU", "ReLU6")  # zero output and zero gradient below 0: a unit never positive is dead
BOUNDED = ("Tanh", "Sigmoid", "Hardtanh")  # "saturated": within the margin of a bound
RECORDED = ("Linear", "Conv1d", "Conv2d", "GELU", "GELUActivation", "SiLU", *DYING, *BOUNDED)
NEVER = 10**9  # a GradNormMonitor period that samples global step 0 only


class LossRecorder(Callback):
    """Per-step losses, the configured learning rate, and the model's initial references."""

    def __init__(self, fixed_step: FixedBatchStep | None = None) -> None:
        self.fixed_step = fixed_step
        self.losses: list[float] = []
        self.configured_lr: float | None = None
        self.expected: float | None = None  # NaN: the model has no reference for its configuration
        self.statistics: dict[str, tuple[float, float]] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        groups = [g for opt in trainer.optimizers for g in opt.param_groups if g["params"]]
        if groups:  # a warm-up scheduler has already scaled "lr"; "initial_lr" is the peak
            self.configured_lr = max(float(g.get("initial_lr", g["lr"])) for g in groups)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        first = trainer.global_step == 0 and batch_idx == 0
        if first and isinstance(pl_module, ReportsInitialStatistics):
            with torch.no_grad():  # before the first update: these depend on the weights
                self.statistics = dict(pl_module.initial_statistics(batch))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            self.losses.append(float(loss.detach()))
        if len(self.losses) == 1 and isinstance(pl_module, ExpectsInitialLoss):
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
            # the first tensor's size is taken; a step time table needs no advice on logging
            warnings.filterwarnings("ignore", "Trying to infer the `batch_size`")
            return int(extract_batch_size(batch))
    except (MisconfigurationException, RecursionError):  # no tensor, or a cyclic batch
        return 0


# ---------------------------------------------------------------------------------- memory


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
