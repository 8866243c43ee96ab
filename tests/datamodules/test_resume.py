"""Training loaders that resume mid-epoch: the rest of the interrupted epoch, in the same order."""

import torch
from lightning.fabric.utilities.data import _replace_dunder_methods
from lightning.pytorch.utilities.data import _is_dataloader_shuffled, _update_dataloader
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from datamodules.resume import (
    EpochItem,
    ResumableBatchSampler,
    ResumableDataLoader,
    SeededRandomSampler,
    item_generator,
)
from datamodules.speech.batching import DurationBatchSampler, EpochSampler

DATASET = list(range(22))


def shuffled_loader(seed: int = 0, epoch: int = 0) -> ResumableDataLoader:
    sampler = SeededRandomSampler(DATASET, seed=seed)
    sampler.set_epoch(epoch)  # as Lightning does before every epoch
    return ResumableDataLoader(
        DATASET,
        batch_sampler=ResumableBatchSampler(sampler, 4, drop_last=False),
        generator=torch.Generator().manual_seed(seed),
    )


def first(loader, n: int) -> list:
    batches = iter(loader)
    return [torch.as_tensor(next(batches)).tolist() for _ in range(n)]


def test_seeded_order_depends_on_the_seed_and_epoch_not_the_global_random_state():
    torch.manual_seed(1)
    order = list(SeededRandomSampler(DATASET, seed=3))
    torch.manual_seed(2)
    assert list(SeededRandomSampler(DATASET, seed=3)) == order
    assert sorted(order) == DATASET
    other_epoch = SeededRandomSampler(DATASET, seed=3)
    other_epoch.set_epoch(1)
    assert list(other_epoch) != order


def test_resumed_loader_yields_the_rest_of_the_interrupted_epoch_twice_over():
    epoch = [batch.tolist() for batch in shuffled_loader(epoch=2)]  # 6 batches, the last of 2
    interrupted = shuffled_loader(epoch=2)
    assert first(interrupted, 2) == epoch[:2]

    resumed = shuffled_loader(epoch=2)
    resumed.load_state_dict(interrupted.state_dict())
    assert first(resumed, 1) == epoch[2:3]
    # interrupted again in the same epoch: the count goes on from the first resume
    again = shuffled_loader(epoch=2)
    again.load_state_dict(resumed.state_dict())
    assert [batch.tolist() for batch in again] == epoch[3:]


def test_a_finished_epoch_resumes_with_the_next_epoch_from_its_start():
    finished = shuffled_loader(epoch=0)
    list(finished)
    resumed = shuffled_loader(epoch=1)
    resumed.load_state_dict(finished.state_dict())
    assert [b.tolist() for b in resumed] == [b.tolist() for b in shuffled_loader(epoch=1)]


def test_building_an_epoch_leaves_the_global_random_state_alone():
    before = torch.get_rng_state()
    iter(shuffled_loader())
    assert torch.equal(torch.get_rng_state(), before)


def test_loader_without_a_resumable_batch_sampler_discards_the_batches_already_yielded():
    interrupted = ResumableDataLoader(DATASET[:6], batch_size=None)  # like the trading paces
    assert first(interrupted, 4) == [0, 1, 2, 3]
    resumed = ResumableDataLoader(DATASET[:6], batch_size=None)
    resumed.load_state_dict(interrupted.state_dict())
    assert [int(item) for item in resumed] == [4, 5]


def test_duration_batches_resume_at_a_batch_of_the_same_epoch():
    durations = [1.0 + (i % 5) for i in DATASET]
    sampler = DurationBatchSampler(
        EpochSampler(DATASET), 3, durations=durations, shuffle=True, seed=0
    )
    sampler.set_epoch(1)
    epoch = list(sampler)
    sampler.resume_at(2)
    assert list(sampler) == epoch[2:]
    assert list(sampler) == epoch  # only the next pass skips


def test_ddp_rebuilds_a_resumable_loader_with_a_shuffling_distributed_sampler():
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = shuffled_loader()
    assert _is_dataloader_shuffled(loader)  # so Lightning asks its DistributedSampler to shuffle
    ranks = []
    for rank in (0, 1):
        distributed = DistributedSampler(DATASET, num_replicas=2, rank=rank, shuffle=True)
        rebuilt = _update_dataloader(loader, distributed)
        assert isinstance(rebuilt, ResumableDataLoader)
        assert isinstance(rebuilt.batch_sampler, ResumableBatchSampler)
        ranks.append([b.tolist() for b in rebuilt])
    assert sorted(i for batches in ranks for b in batches for i in b) == DATASET


class NoisyItems(torch.utils.data.Dataset):
    """Item i of an epoch: (i, a random draw), as an augmented dataset would draw it."""

    keyed_by_epoch = True

    def __len__(self) -> int:
        return len(DATASET)

    def __getitem__(self, key: EpochItem) -> torch.Tensor:
        draw = torch.rand((), generator=item_generator(seed=7, epoch=key.epoch, index=key.index))
        return torch.stack([torch.tensor(float(key.index)), draw])


def noisy_loader() -> ResumableDataLoader:
    return ResumableDataLoader(
        NoisyItems(),
        batch_sampler=ResumableBatchSampler(SeededRandomSampler(DATASET), 4, drop_last=False),
        num_workers=2,
        persistent_workers=True,
        generator=torch.Generator().manual_seed(0),
    )


def test_per_item_draws_in_workers_resume_exactly_in_a_later_epoch():
    uninterrupted, epochs = noisy_loader(), []
    for epoch in (0, 1):
        uninterrupted.batch_sampler.sampler.set_epoch(epoch)  # as Lightning does
        epochs.append([batch.tolist() for batch in uninterrupted])
    draws = [{i: d for batch in batches for i, d in batch} for batches in epochs]
    assert draws[0].keys() == draws[1].keys() and draws[0] != draws[1]  # new draws each epoch

    interrupted = noisy_loader()
    interrupted.batch_sampler.sampler.set_epoch(1)
    assert first(interrupted, 2) == epochs[1][:2]
    # A resumed run loads the state and builds the iterator before Lightning's set_epoch; the
    # workers start fresh and draw their first items at once.
    resumed = noisy_loader()
    resumed.load_state_dict(interrupted.state_dict())
    assert [batch.tolist() for batch in resumed] == epochs[1][2:]


def test_per_item_draws_are_a_function_of_seed_epoch_and_index_only():
    def draw(*key):
        return torch.rand(4, generator=item_generator(*key))

    assert torch.equal(draw(0, 1, 2), draw(0, 1, 2))
    assert len({tuple(draw(*key).tolist()) for key in [(0, 1, 2), (0, 2, 1), (1, 1, 2)]}) == 3
