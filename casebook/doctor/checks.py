"""The doctor's checks, registered by name in table order: ``REGISTRY[name](examination)`` gives
that check's rows, and ``casebook doctor --only name,name`` runs a chosen few.

Each check is a function of the ``Examination`` and its title (the table's check column); the
checks that read the same short training (initial loss and overfit; gradients, activations,
throughput and memory) share one run of it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.tuner import Tuner

from casebook.common.errors import DataError, first_line
from casebook.doctor.examination import DoctorOptions, Examination
from casebook.doctor.harness import Rehearsal, first_batch, serving, training_on_fixed_batch
from casebook.doctor.probes import DYING, RECORDED, memory_budget_mb
from casebook.doctor.protocols import CountsClasses, HasInspectionBatches, HasSplitKeys
from casebook.doctor.report import CheckResult, DoctorReport, Status

LR_FINDER_BETA = 0.98  # the smoothing of Lightning's learning-rate finder (_LRCallback)
NO_FIXED_BATCH = "manual optimization without fixed_batch() and fixed_batch_loss()"


@dataclass(frozen=True)
class Check:
    """A registered check: ``name`` for ``--only``, ``title`` for the table's check column."""

    name: str
    title: str
    rows: Callable[[Examination, str], list[CheckResult]]  # (examination, title) -> rows

    def __call__(self, examination: Examination) -> list[CheckResult]:
        """The check's rows; a check that raises fails with the error: a broken recipe is what
        it looks for."""
        try:
            return self.rows(examination, self.title)
        except Exception as error:
            note = f"raised {type(error).__name__}: {first_line(error)[:160]}"
            return [CheckResult(self.title, "fail", note=note)]


REGISTRY: dict[str, Check] = {}


def check(name: str, title: str) -> Callable:
    """Registers the decorated function as the check ``name``, after those registered before."""

    def register(rows: Callable[[Examination, str], list[CheckResult]]) -> Callable:
        REGISTRY[name] = Check(name, title, rows)
        return rows

    return register


def examine(
    trainer: Trainer,
    model: LightningModule,
    datamodule: LightningDataModule,
    options: DoctorOptions,
    names: Sequence[str] | None = None,
) -> DoctorReport:
    """Runs the checks ``names`` (default: all) on rehearsals of ``trainer``'s recipe."""
    with Rehearsal(trainer, model) as rehearsal:
        datamodule.prepare_data()
        datamodule.setup("fit")
        examination = Examination(rehearsal, datamodule, options)
        rows = [row for name in names or REGISTRY for row in REGISTRY[name](examination)]
    return DoctorReport(type(model).__name__, type(datamodule).__name__, rows)


def selected(only: str | Sequence[str] | None) -> list[str] | None:
    """The registry's names among ``only`` (comma-separated or a list), in table order; None
    for every check. An unknown name is a DataError naming it and the known ones."""
    if only is None:
        return None
    wanted = [n.strip() for n in (only.split(",") if isinstance(only, str) else only)]
    if unknown := [n for n in wanted if n not in REGISTRY]:
        raise DataError(
            f"--only: no check named {', '.join(map(repr, unknown))}; "
            f"the checks are {', '.join(REGISTRY)}"
        )
    return [name for name in REGISTRY if name in wanted]


# ------------------------------------------------------------------ initial loss, overfit


@check("initial_loss", "initial loss")
def initial_loss(examination: Examination, title: str) -> list[CheckResult]:
    if examination.manual and not examination.fixed_mode:
        return [CheckResult(title, "skip", note=NO_FIXED_BATCH)]
    run = examination.single_batch()
    recorder, options = run.recorder, examination.options
    if not recorder.losses:
        return [CheckResult(title, "skip", note="training_step returned no loss (nothing trained)")]
    initial = recorder.losses[0]
    if recorder.expected is None:
        note = f"{examination.model_name} defines no expected_initial_loss()"
        rows = [CheckResult(title, "skip", f"{initial:.4g}", note=note)]
    elif math.isnan(recorder.expected):
        note = "expected_initial_loss() has no reference for this configuration"
        rows = [CheckResult(title, "skip", f"{initial:.4g}", note=note)]
    else:
        rows = [ratio_row(options, title, initial, recorder.expected, run.what)]
    for name, (measured, expected) in recorder.statistics.items():
        rows.append(ratio_row(options, f"{title} ({name})", measured, expected, "at init"))
    return rows


def ratio_row(
    options: DoctorOptions, title: str, measured: float, expected: float, what: str
) -> CheckResult:
    """Passes within ``init_warn_factor`` of ``expected`` either way, fails past ``init_fail_factor``."""
    values = {"measured": measured, "expected": expected}
    row = CheckResult(title, "pass", f"{measured:.4g}", f"{expected:.4g}", values=values)
    if not math.isfinite(measured):
        return row.judged("fail", f"{what} is not finite")
    if expected <= 0 or measured <= 0:
        return row.judged("warn", "not positive: no ratio to judge")
    factor = values["factor"] = max(measured / expected, expected / measured)
    status = grade(factor, options.init_warn_factor, options.init_fail_factor)
    side = "above" if measured > expected else "below"
    note = what if status == "pass" else f"{what}, {factor:.2g}x {side}"
    if status == "fail" and side == "above":
        note += ": check the initialization and the output scale"
    return row.judged(status, note)


@check("overfit_one_batch", "overfit one batch")
def overfit_one_batch(examination: Examination, title: str) -> list[CheckResult]:
    if examination.manual and not examination.fixed_mode:
        return [CheckResult(title, "skip", note=NO_FIXED_BATCH)]
    run = examination.single_batch()
    losses = run.recorder.losses
    if not losses:
        return [CheckResult(title, "skip", note="training_step returned no loss (nothing trained)")]
    options = examination.options
    factor, fail_factor = options.overfit_factor, options.overfit_fail_factor
    initial, final = losses[0], float(np.median(losses[-5:]))
    values = {"initial": initial, "final": final, "steps": len(losses)}
    measured = f"{initial:.4g} -> {final:.4g} in {len(losses)} steps"
    row = CheckResult(title, "pass", measured, f"falls {factor:g}x", values=values)
    bad = [i for i, loss in enumerate(losses) if not math.isfinite(loss)]
    if bad:
        return [row.judged("fail", f"non-finite loss at step {bad[0]}")]
    if initial <= 0:
        return [row.judged("warn", "initial loss not positive")]
    fallen = values["factor"] = initial / final if final > 0 else math.inf
    status: Status = "pass" if fallen >= factor else "warn" if fallen >= fail_factor else "fail"
    note = f"{run.what} fell {fallen:.3g}x"
    if status == "fail":
        note += ": it cannot fit one batch (a bug, the learning rate or the capacity)"
    return [row.judged(status, note)]


# ------------------------------------------------------------------ learning rate


@check("learning_rate", "learning rate")
def learning_rate(examination: Examination, title: str) -> list[CheckResult]:
    options, datamodule = examination.options, examination.datamodule
    if examination.manual and not examination.fixed_mode:
        return [CheckResult(title, "skip", note=NO_FIXED_BATCH)]
    try:  # the single-batch run records the configured rate (a warm-up's peak)
        configured = examination.single_batch().recorder.configured_lr
    except Exception:
        note = "the single-batch run, which reads the configured rate, raised (see its rows)"
        return [CheckResult(title, "skip", note=note)]
    if not configured:
        return [CheckResult(title, "skip", note="no optimizer with a learning rate")]
    low, high = configured / options.lr_span, configured * 100
    with examination.rehearsal.fresh_model() as model, contextlib.ExitStack() as patches:
        if examination.fixed_mode:
            patches.enter_context(training_on_fixed_batch(model))
            batch = first_batch(datamodule)
            patches.enter_context(serving(datamodule, batch, options.lr_steps))
        patches.enter_context(contextlib.redirect_stderr(io.StringIO()))  # its progress bar
        finder = Tuner(examination.rehearsal.trainer([], options.lr_steps)).lr_find(
            model,
            datamodule=datamodule,
            min_lr=low,
            max_lr=high,
            num_training=options.lr_steps,
            update_attr=False,
        )
    lrs, losses = finder.results["lr"], finder.results["loss"]
    # Lightning's finder divides its running mean by 1 - beta^(step + 1) counting the step
    # just taken twice, so its first losses read low (half, at the first step): undone here.
    beta = LR_FINDER_BETA
    losses = [loss * (1 - beta ** (i + 2)) / (1 - beta ** (i + 1)) for i, loss in enumerate(losses)]
    curve = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    if len(curve) < 3:
        note = "the loss is not finite from the lowest rates on"
        return [CheckResult(title, "fail", f"{len(curve)} finite losses", note=note)]
    skip = min(10, len(curve) // 5)  # the noisiest, as Lightning's suggestion() does
    steepest = steepest_descent(curve, skip)
    lowest = min(curve[skip:], key=lambda point: point[1])[0]
    # Lightning's finder stops once the smoothed loss exceeds 4x its best: divergence.
    diverged = lrs[-1] if len(lrs) < options.lr_steps else None
    values = {
        "configured": configured,
        "steepest": steepest,
        "lowest_loss_lr": lowest,
        "diverges_at": diverged,
        "range": [low, high],
    }
    measured = f"configured {configured:.2g}; steepest {steepest:.2g}, min loss {lowest:.2g}, "
    measured += f"diverges {diverged:.2g}" if diverged else f"no divergence to {high:.2g}"
    row = CheckResult(title, "pass", measured, "configured < divergence", values=values)
    on = " on fixed_batch_loss" if examination.fixed_mode else ""
    if diverged is not None and configured >= diverged:
        return [row.judged("fail", f"the loss diverges at the configured rate{on}: lower it")]
    if configured > lowest:
        note = f"the configured rate is past the range test's loss minimum{on}"
        return [row.judged("warn", note)]
    if configured < steepest / 100:
        note = f"the configured rate is below 1/100 of the steepest descent{on}"
        return [row.judged("warn", note)]
    return [row.judged("pass", f"Tuner.lr_find{on}")]


def steepest_descent(curve: list[tuple[float, float]], skip_begin: int = 10) -> float:
    """The rate where the range test's loss falls fastest per decade. Hand-written because
    Lightning's ``suggestion()`` differentiates with respect to the rate itself, which on an
    exponential sweep favours the noise of the first, closely spaced rates."""
    lrs = np.log10([lr for lr, _ in curve])
    slopes = np.gradient(np.array([loss for _, loss in curve]), lrs)[skip_begin:-1]
    return float(10 ** lrs[skip_begin + int(np.argmin(slopes))])


# ------------------------------------------------------------------ first real steps


@check("gradient_norms", "gradient norms")
def gradient_norms(examination: Examination, title: str) -> list[CheckResult]:
    probe = examination.first_steps().probe
    explode, vanish = examination.explode_threshold, examination.vanish_threshold
    if probe.initial_global_norm is None:
        return [CheckResult(title, "skip", note="no optimizer step took gradients")]
    layers = probe.initial_layer_norms
    values = {"global": probe.initial_global_norm, "layers": layers}
    expected = f"finite, per layer {vanish:g}..{explode:g}"
    if probe.nonfinite_step is not None:
        note = f"NaN/inf gradient at step {probe.nonfinite_step}"
        return [CheckResult(title, "fail", "non-finite", expected, note, values)]
    low, high = min(layers, key=layers.get), max(layers, key=layers.get)
    measured = (
        f"global {probe.initial_global_norm:.3g}; layers {layers[low]:.2g} ({low}) .. "
        f"{layers[high]:.2g} ({high}), {len(layers)} layers"
    )
    row = CheckResult(title, "pass", measured, expected, values=values)
    exploding = [k for k, v in layers.items() if v > explode]
    vanishing = [k for k, v in layers.items() if v < vanish]
    if exploding:
        return [row.judged("fail", f"exploding at step 0: {', '.join(exploding[:3])}")]
    if probe.largest_global_norm > explode:
        note = f"the global norm reached {probe.largest_global_norm:.3g} in the first steps"
        return [row.judged("fail", note)]
    if vanishing:
        return [row.judged("warn", f"vanishing at step 0: {', '.join(vanishing[:3])}")]
    return [row.judged("pass", "first training step")]


@check("activations", "activations")
def activations(examination: Examination, title: str) -> list[CheckResult]:
    options = examination.options
    run = examination.first_steps()
    stats = run.probe.last_activation_stats
    if not stats:
        return [CheckResult(title, "skip", note=f"no {', '.join(RECORDED[:4])}, ... module ran")]
    kinds = {name: type(module).__name__ for name, module in run.model.named_modules()}
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
    row = CheckResult(
        title,
        "pass",
        "; ".join(parts) + f"; {len(stats)} layers",
        f"dead, saturated <= {options.activation_warn_fraction:.0%}",
        values={"std": spread, "dead": dead, "saturated": saturated},
    )
    if worst:
        fraction, label, layer = max(worst)
        status = grade(fraction, options.activation_warn_fraction, options.activation_fail_fraction)
        if status != "pass":
            note = f"{fraction:.0%} of {layer}'s units are {label} on the first batch"
            return [row.judged(status, note)]
    if spread[high] > 1e3:
        note = f"{high}'s outputs have std {spread[high]:.3g}: check the initialization"
        return [row.judged("warn", note)]
    note = "first training batch" + ("" if worst else "; no ReLU, Tanh or Sigmoid module")
    return [row.judged("pass", note)]


# ------------------------------------------------------------------ data


@check("nonfinite_data", "data: non-finite")
def nonfinite_data(examination: Examination, title: str) -> list[CheckResult]:
    n, datamodule = examination.options.data_batches, examination.datamodule
    if isinstance(datamodule, HasInspectionBatches):
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
    if not scanned:
        return [CheckResult(title, "skip", note=f"no floating-point values in the {source}")]
    values = {"values_scanned": scanned, "nonfinite": found}
    measured = f"{sum(found.values())} of {scanned:,} values"
    row = CheckResult(title, "pass", measured, "0", values=values)
    if found:
        where = ", ".join(f"{place} ({count})" for place, count in list(found.items())[:3])
        return [row.judged("fail", "NaN/inf in " + where)]
    return [row.judged("pass", source)]


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


@check("class_balance", "data: class balance")
def class_balance(examination: Examination, title: str) -> list[CheckResult]:
    datamodule = examination.datamodule
    if not isinstance(datamodule, CountsClasses):
        note = f"{type(datamodule).__name__} defines no class_counts()"
        return [CheckResult(title, "skip", note=note)]
    counts = {str(k): int(v) for k, v in datamodule.class_counts().items()}
    present = {k: v for k, v in counts.items() if v > 0}
    missing = [k for k, v in counts.items() if v == 0]
    values = {"counts": counts}
    if len(present) <= 1:
        measured = f"{len(present)} of {len(counts)} classes occur"
        note = f"the training labels hold one class ({', '.join(present) or 'none'})"
        return [CheckResult(title, "fail", measured, "2+ classes", note, values)]
    total = sum(present.values())
    common, rare = max(present, key=present.get), min(present, key=present.get)
    shares = f"{common!r} {present[common] / total:.1%} .. {rare!r} {present[rare] / total:.2%}"
    if present[common] == present[rare]:
        shares = f"each {present[common] / total:.1%}"
    measured = f"{len(present)}/{len(counts)} classes; {shares}"
    row = CheckResult(title, "pass", measured, "every class, max/min <= 1000", values=values)
    if missing:
        note = f"{len(missing)} never occur in training: {', '.join(map(repr, missing[:5]))}"
        return [row.judged("warn", note)]
    if (ratio := present[common] / present[rare]) > 1000:
        return [row.judged("warn", f"commonest/rarest = {ratio:.3g}: weight the loss or resample")]
    return [row.judged("pass", "training split")]


@check("split_leakage", "data: split leakage")
def split_leakage(examination: Examination, title: str) -> list[CheckResult]:
    datamodule = examination.datamodule
    if not isinstance(datamodule, HasSplitKeys):
        note = f"{type(datamodule).__name__} defines no split_keys()"
        return [CheckResult(title, "skip", note=note)]
    parts, leaks, values = [], [], {}
    for kind, splits in datamodule.split_keys().items():
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
    row = CheckResult(title, "pass", "; ".join(parts), "disjoint", values=values)
    if leaks:
        return [row.judged("fail", "; ".join(leaks[:3]))]
    return [row.judged("pass", "split_keys()")]


# ------------------------------------------------------------------ speed and memory


@check("throughput", "throughput")
def throughput(examination: Examination, title: str) -> list[CheckResult]:
    probe = examination.first_steps().probe
    steps, waits = probe.step_seconds[1:], probe.wait_seconds  # the first batch is warm-up
    if not steps:
        return [CheckResult(title, "skip", note="fewer than two training batches ran")]
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
    if batches := full_run_batches(examination):
        values["full_run_seconds"] = batches / per_second
        note += f"; the configured run ~{duration(batches / per_second)} ({batches} batches)"
    limit = examination.options.data_wait_warn_fraction
    row = CheckResult(title, "pass", measured, f"data wait <= {limit:.0%}", values=values)
    if wait > limit:
        return [row.judged("warn", "waiting for data (more num_workers?); " + note)]
    return [row.judged("pass", note)]


def full_run_batches(examination: Examination) -> int | None:
    """Training batches of the configured run, when its Trainer and data say."""
    outer = examination.rehearsal.outer
    if outer.max_steps and outer.max_steps > 0:
        return None if examination.manual else outer.max_steps  # manual: steps are not batches
    if not (outer.max_epochs and outer.max_epochs > 0):
        return None
    with contextlib.suppress(TypeError):  # an unsized loader
        return len(examination.datamodule.train_dataloader()) * outer.max_epochs
    return None


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2g} s"
    return f"{seconds / 60:.3g} min" if seconds < 3600 else f"{seconds / 3600:.3g} h"


@check("peak_memory", "peak memory")
def peak_memory(examination: Examination, title: str) -> list[CheckResult]:
    run = examination.first_steps()
    probe, device = run.probe, run.model.device
    if probe.peak_mb is None:
        return [CheckResult(title, "skip", note="no training step ran")]
    budget = examination.options.memory_budget_mb or memory_budget_mb(device)
    if device.type == "cuda":
        measured = f"{probe.peak_mb:.0f} MB CUDA allocated"
    else:
        grown = max(0.0, probe.peak_mb - probe.rss_before_mb)
        measured = f"{probe.peak_mb:.0f} MB RSS (+{grown:.0f} MB in training)"
    values = {"peak_mb": probe.peak_mb, "budget_mb": budget}
    row = CheckResult(title, "pass", measured, f"<= {budget:.0f} MB", values=values)
    if probe.peak_mb > budget:
        return [row.judged("fail", "over the memory budget")]
    return [row.judged("pass", "first training steps")]


def grade(value: float, warn_above: float, fail_above: float) -> Status:
    return "fail" if value > fail_above else "warn" if value > warn_above else "pass"


CHECKS = tuple(registered.title for registered in REGISTRY.values())  # the table's order
