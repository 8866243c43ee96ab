"""How the doctor rehearses a recipe: short single-device runs on fresh copies of the initial model,
in a scratch directory, silenced. Every patch is a context manager that restores what it changed."""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader, Dataset

_MISSING = object()


@contextlib.contextmanager
def patched(target: object, name: str, value: Any) -> Iterator[None]:
    """``target.<name>`` is ``value`` inside (an instance attribute, shadowing a method of the
    class); on the way out, the instance attribute that was there before, or none again."""
    before = vars(target).get(name, _MISSING)
    setattr(target, name, value)
    try:
        yield
    finally:
        if before is _MISSING:
            delattr(target, name)
        else:
            setattr(target, name, before)


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
    with patched(datamodule, "train_dataloader", lambda: loader):
        yield


class FixedBatchStep:
    """A manual-optimization module's ``training_step`` as one optimizer step on
    ``fixed_batch_loss(fixed_batch(first batch))`` (the module satisfies ``FitsFixedBatch``). It
    also steps the schedulers (the learning-rate finder's ramp), which manual optimization leaves
    to ``training_step``."""

    def __init__(self, module: LightningModule) -> None:
        self.module = module
        self.fixed: Any = None

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


@contextlib.contextmanager
def training_on_fixed_batch(module: LightningModule) -> Iterator[FixedBatchStep]:
    """Inside, ``module.training_step`` is a ``FixedBatchStep``'s (yielded: it holds the batch);
    a bound method, as Lightning reads its signature."""
    step = FixedBatchStep(module)
    with patched(module, "training_step", step.training_step):
        yield step


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


class Rehearsal:
    """Short runs of the configured recipe; a context manager that holds a scratch directory
    and silences Lightning while open. ``model`` is copied at once: the runs start from it as
    configured, whatever happens to the original."""

    def __init__(self, outer: Trainer, model: LightningModule) -> None:
        self.outer = outer
        self.pristine = copy.deepcopy(model)
        self.scratch = ""
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Rehearsal:
        self._stack.enter_context(quiet())
        self.scratch = self._stack.enter_context(
            tempfile.TemporaryDirectory(prefix="casebook-doctor-")
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def trainer(self, callbacks: list[Callback], max_steps: int) -> Trainer:
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

    @contextlib.contextmanager
    def fresh_model(self) -> Iterator[LightningModule]:
        """A fresh copy of the initial model whose ``on_fit_end`` does nothing inside: the
        doctor's runs are rehearsals, they export nothing (a teacher, pretrained encoders)."""
        model = copy.deepcopy(self.pristine)
        with patched(model, "on_fit_end", _nothing):
            yield model
