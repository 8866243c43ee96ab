"""Batches of similar-length utterances, so little of each batch is padding.

Lightning has no length-bucketing sampler, so this one is hand-written. It subclasses PyTorch's
`BatchSampler` (through `ResumableBatchSampler`, so a resumed epoch skips the batches already
trained on) and takes a `sampler` first so that Lightning can rebuild it with a
`DistributedSampler` under DDP; it then reads `num_replicas`, `rank` and `epoch` from that
sampler (Lightning calls its `set_epoch`), builds the same batch list on every rank and deals the
batches out, padded so every rank gets the same number (unequal counts would hang DDP).
"""

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import DistributedSampler, Sampler, SequentialSampler

from datamodules.resume import ResumableBatchSampler


class EpochSampler(SequentialSampler):
    """Sequential indices with `set_epoch`: Lightning calls it on a batch sampler's `sampler`
    each epoch, which is how a single-process `DurationBatchSampler` learns the epoch."""

    epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class DurationBatchSampler(ResumableBatchSampler):
    """Groups utterances of similar duration into batches.

    Training (`shuffle=True`): each epoch, indices are shuffled, cut into pools of
    `pool_batches` batches, each pool sorted by duration and cut into batches, and the batches
    shuffled. Evaluation: one pass sorted by duration. A batch holds at most `batch_size`
    utterances and, if `max_batch_seconds` is set, at most that many padded seconds
    (items x longest item), so batches of short utterances are larger. Under DDP, `drop_last`
    drops the batches that do not divide evenly among ranks instead of repeating some.
    `shortest_first_epochs`: training's first epochs go from the shortest utterances to the
    longest instead (SortaGrad).
    """

    def __init__(
        self,
        sampler: Sampler | Sequence | None,
        batch_size: int,
        drop_last: bool = False,
        *,
        durations: Sequence[float],
        max_batch_seconds: float | None = None,
        shuffle: bool = False,
        seed: int = 0,
        pool_batches: int = 50,
        shortest_first_epochs: int = 0,
    ) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.durations = list(durations)
        self.max_batch_seconds = max_batch_seconds
        self.shuffle = shuffle
        self.seed = seed
        self.pool_batches = pool_batches
        self.shortest_first_epochs = shortest_first_epochs
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for `epoch` (Lightning calls this on `self.sampler` when distributed)."""
        self._epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def _replicas(self) -> tuple[int, int, int]:
        """(num_replicas, rank, epoch) from a DistributedSampler if Lightning injected one."""
        if isinstance(self.sampler, DistributedSampler):
            return self.sampler.num_replicas, self.sampler.rank, self.sampler.epoch
        return 1, 0, max(self._epoch, getattr(self.sampler, "epoch", 0))

    def _cut(self, indices: list[int]) -> list[list[int]]:
        batches, batch, longest = [], [], 0.0
        for i in indices:
            d = self.durations[i]
            grown = max(longest, d)
            too_many = len(batch) >= self.batch_size
            too_long = self.max_batch_seconds is not None and grown * (len(batch) + 1) > (
                self.max_batch_seconds
            )
            if batch and (too_many or too_long):
                batches.append(batch)
                batch, grown = [], d
            batch.append(i)
            longest = grown
        if batch:
            batches.append(batch)
        return batches

    def batches(self) -> list[list[int]]:
        """This rank's batches for the current epoch."""
        num_replicas, rank, epoch = self._replicas()
        indices = list(range(len(self.durations)))
        if self.shuffle and epoch >= self.shortest_first_epochs:
            rng = random.Random(self.seed * 1_000_003 + epoch)
            rng.shuffle(indices)
            pool = self.batch_size * self.pool_batches
            batches = []
            for start in range(0, len(indices), pool):
                chunk = sorted(indices[start : start + pool], key=self.durations.__getitem__)
                batches += self._cut(chunk)
            rng.shuffle(batches)
        else:  # evaluation, and SortaGrad's first training epochs: shortest utterance first
            batches = self._cut(sorted(indices, key=self.durations.__getitem__))
        if num_replicas > 1:
            if self.drop_last:
                batches = batches[: len(batches) - len(batches) % num_replicas]
            else:  # repeat the first batches so every rank steps the same number of times
                missing = -len(batches) % num_replicas
                batches += batches[:missing]
            batches = batches[rank::num_replicas]
        return batches

    def epoch_batches(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())
