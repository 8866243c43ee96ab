"""Training loaders that resume in the middle of an epoch, in the same order.

Lightning 2.6 checkpoints a training DataLoader only if it has `state_dict`/`load_state_dict`
(its `_Stateful` protocol); it loads that state before the resumed epoch's iterator is built. A
plain DataLoader restarts the interrupted epoch at its first batch: Lightning only counts the
batches as done, so the resumed epoch repeats the first ones and never reaches the last ones.
torchdata's `StatefulDataLoader` does this (and checkpoints workers' state too) but is not a
dependency; for samplers whose order is a function of (seed, epoch), counting batches is enough:

- `ResumableDataLoader` counts the batches the current epoch handed out; the resumed epoch skips
  as many, by index if its batch sampler is a `ResumableBatchSampler` (no item is loaded),
  otherwise by loading and discarding them (fine for the trading environment's dummy items).
- `ResumableBatchSampler`: torch's `BatchSampler` whose next pass can start at a given batch.
- `SeededRandomSampler`: each epoch a permutation drawn from (seed, epoch), not from the global
  random state, so an interrupted epoch's order can be drawn again.
- `WeightedBatchSampler`: batches of weighted draws with replacement from (seed, epoch), e.g.
  class-balanced; under DDP each rank takes its share of the same draws.

Per-item randomness (augmentation, a random frame) is resumed by construction rather than saved:
a dataset that sets `keyed_by_epoch = True` gets `EpochItem(epoch, index)` keys from a
`ResumableDataLoader` and draws from `item_generator(seed, epoch, index)`. A random stream
would not do with `num_workers > 0`: each (persistent) worker's stream depends on which items it
happened to load before, which a resumed run, with fresh workers and the first batches skipped,
cannot repeat.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler, Sampler


class EpochItem(NamedTuple):
    """The key a `ResumableDataLoader` hands a dataset with `keyed_by_epoch = True`, in place of
    the bare index: which item, and in which epoch it is drawn."""

    epoch: int
    index: int


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator whose draws are a function of (seed, epoch, index) only: the same in the main
    process or any worker, in any order, so a resumed epoch draws what the interrupted one did."""
    # A hash, not seed * a + epoch * b + index: nearby keys must not give overlapping streams.
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


class ResumableBatchSampler(BatchSampler):
    """A `BatchSampler` whose next pass starts at batch `resume_at(batch)` of its epoch."""

    _resume_at = 0

    def resume_at(self, batch: int) -> None:
        """The next pass skips the epoch's first `batch` batches (trained on before a checkpoint)."""
        self._resume_at = batch

    def epoch_batches(self) -> Iterator[list[int]]:
        """All batches of the current epoch; subclasses that order batches override this."""
        return super().__iter__()

    def __iter__(self) -> Iterator[list[int]]:
        # A generator: the epoch's batches are drawn at the first batch, after Lightning's set_epoch.
        start, self._resume_at = self._resume_at, 0
        yield from itertools.islice(self.epoch_batches(), start, None)


class SeededRandomSampler(RandomSampler):
    """A new random order each epoch, a function of (seed, epoch) only.

    A `RandomSampler`, so under DDP Lightning sees a shuffled loader and swaps in its
    `DistributedSampler(shuffle=True)`, whose order is also a function of (seed, epoch).
    """

    def __init__(self, data_source, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this before every epoch."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class SeededWeightedSampler(Sampler[int]):
    """`WeightedRandomSampler` drawn from (seed, epoch) only, so a resumed epoch draws the same
    items again: `len(weights)` draws with replacement, item i with probability ∝ `weights[i]`."""

    def __init__(self, weights: list[float] | torch.Tensor, seed: int = 0) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        if self.weights.ndim != 1 or not len(self.weights) or (self.weights < 0).any():
            raise ValueError("weights must be a non-empty 1-D sequence of non-negative numbers")
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this before every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        draws = torch.multinomial(self.weights, len(self.weights), True, generator=generator)
        yield from draws.tolist()


class WeightedBatchSampler(ResumableBatchSampler):
    """Batches of a `SeededWeightedSampler`'s draws (built from `weights` and `seed` when
    `sampler` is None), resumable mid-epoch.

    Under DDP Lightning swaps a batch sampler's `sampler` for a `DistributedSampler` (not a
    shuffling one: this is no `RandomSampler`). The draws then still come from (seed, epoch),
    the same on every rank, and each rank takes every num_replicas-th, padded to equal counts
    as `DistributedSampler` pads, so the weighting survives and every rank steps as often.
    """

    def __init__(
        self,
        sampler: Sampler[int] | None,
        batch_size: int,
        drop_last: bool,
        weights: list[float] | torch.Tensor,
        seed: int = 0,
    ) -> None:
        self.weights, self.seed = weights, seed
        super().__init__(sampler or SeededWeightedSampler(weights, seed), batch_size, drop_last)

    def _draws(self) -> list[int]:
        """This rank's draws of the current epoch."""
        if not isinstance(self.sampler, DistributedSampler):
            return list(self.sampler)
        replicas, rank = self.sampler.num_replicas, self.sampler.rank
        draws = SeededWeightedSampler(self.weights, self.seed)
        draws.set_epoch(self.sampler.epoch)
        drawn = list(draws)
        per_rank = math.ceil(len(drawn) / replicas)
        drawn += drawn[: per_rank * replicas - len(drawn)]
        return drawn[rank::replicas]

    def epoch_batches(self) -> Iterator[list[int]]:
        drawn = self._draws()
        for start in range(0, len(drawn), self.batch_size):
            batch = drawn[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch

    def __len__(self) -> int:
        if isinstance(self.sampler, DistributedSampler):
            count = math.ceil(len(self.weights) / self.sampler.num_replicas)
        else:
            count = len(self.sampler)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)


class ResumableDataLoader(DataLoader):
    """A training DataLoader that Lightning checkpoints mid-epoch; see the module docstring.

    Give it a `generator`: each iterator draws its workers' base seed from it, instead of from the
    global torch generator, so building an epoch's iterator (which a resumed run does before the
    global random state is restored) leaves the global random state alone.

    A dataset with `keyed_by_epoch = True` is indexed with `EpochItem(epoch, index)`, the epoch
    being the one Lightning set on this loader's samplers.
    """

    _yielded = 0  # batches of the current epoch handed out (skipped ones included)
    _resume_at = 0
    _epoch_generator_state: torch.Tensor | None = None  # self.generator before this epoch's draw

    @property
    def epoch(self) -> int:
        """The epoch Lightning last set on this loader's samplers (`set_epoch`), 0 before that."""
        for sampler in (getattr(self.batch_sampler, "sampler", None), self.sampler):
            if isinstance(getattr(sampler, "epoch", None), int):
                return sampler.epoch
        return 0

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"batches_yielded": self._yielded, "epoch": self.epoch}
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
            state["epoch_generator"] = self._epoch_generator_state
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        yielded = int(state_dict.get("batches_yielded", 0))
        # A checkpoint after an epoch's last batch resumes with the next epoch, from its start.
        mid_epoch = 0 < yielded < len(self)
        self._resume_at = yielded if mid_epoch else 0
        generator = state_dict.get("epoch_generator" if mid_epoch else "generator")
        if self.generator is not None and generator is not None:
            self.generator.set_state(generator)  # the same worker seeds as the interrupted epoch
        if "epoch" in state_dict:
            # A resumed run builds its first iterator before Lightning's set_epoch, and workers
            # draw their first indices as it is built: they must draw the resumed epoch's.
            _set_sampler_epoch(self, state_dict["epoch"] + (yielded >= len(self)))

    @property
    def _index_sampler(self):
        # What torch's DataLoader iterates for the keys it hands the dataset, in the main process
        # or the workers: read once per iterator (persistent workers keep it across epochs).
        batches = super()._index_sampler
        if not getattr(self.dataset, "keyed_by_epoch", False):
            return batches
        return _EpochKeys(batches, self)

    def __iter__(self) -> Iterator[Any]:
        start, self._resume_at = self._resume_at, 0
        discard = start
        if start and isinstance(self.batch_sampler, ResumableBatchSampler):
            self.batch_sampler.resume_at(start)
            discard = 0
        if self.generator is not None:
            self._epoch_generator_state = self.generator.get_state()
        self._yielded = start
        # Built now, not at the first batch, as Lightning expects of iter(DataLoader).
        return self._count(super().__iter__(), discard)

    def _count(self, batches: Iterator[Any], discard: int) -> Iterator[Any]:
        for batch in itertools.islice(batches, discard, None):
            self._yielded += 1
            yield batch


class _EpochKeys:
    """`batches` (lists of indices) as lists of `EpochItem`s of `loader`'s epoch when iterated."""

    def __init__(self, batches, loader: ResumableDataLoader) -> None:
        self.batches, self.loader = batches, loader

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[EpochItem]]:
        epoch = self.loader.epoch
        for batch in self.batches:
            yield [EpochItem(epoch, index) for index in batch]
