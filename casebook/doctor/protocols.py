"""What a task implements to opt into a check: small optional methods, each a ``Protocol``.

A task satisfies one by defining the method (no base class to inherit); a check tests
``isinstance(module, Protocol)`` and reports ``skip`` with the reason when the task has none.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class ExpectsInitialLoss(Protocol):
    """LightningModule: the "initial loss" check's reference."""

    def expected_initial_loss(self, batch: Any) -> float | None:
        """The loss ``training_step`` (or ``fixed_batch_loss``) gives on ``batch`` for
        uninformative outputs (classification: ln of the number of classes); must not depend on
        the weights; None where the configuration has none."""


@runtime_checkable
class ReportsInitialStatistics(Protocol):
    """LightningModule: more "initial loss (<name>)" rows."""

    def initial_statistics(self, batch: Any) -> Mapping[str, tuple[float, float]]:
        """Other (measured, expected) values known at initialization, e.g. a policy's entropy
        against ln(number of actions); measured before the first update."""


@runtime_checkable
class FitsFixedBatch(Protocol):
    """LightningModule with manual optimization (RL), whose ``training_step`` gathers its own
    data: the single-batch overfit and the learning-rate range test use these instead."""

    def fixed_batch(self, batch: Any) -> Any:
        """A batch to fit repeatedly, made from the first training batch."""

    def fixed_batch_loss(self, fixed: Any) -> torch.Tensor:
        """A differentiable loss on ``fixed``."""


@runtime_checkable
class HasSplitKeys(Protocol):
    """LightningDataModule: the "data: split leakage" check."""

    def split_keys(self) -> Mapping[str, Mapping[str, Collection]]:
        """kind -> split -> the keys that must not be shared (dates, voices, sentences, video
        ids, held-out steps); any shared key fails."""


@runtime_checkable
class CountsClasses(Protocol):
    """LightningDataModule: the "data: class balance" check."""

    def class_counts(self) -> Mapping[str, int]:
        """Training examples per class."""


@runtime_checkable
class HasInspectionBatches(Protocol):
    """LightningDataModule whose training batches do not hold what the model reads (an RL
    environment's market table): the "data: non-finite" check scans these instead."""

    def inspection_batches(self) -> Mapping[str, Any]:
        """label -> nested tensors to scan for NaN/inf."""
