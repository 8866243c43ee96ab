"""Training loaders that resume mid-epoch: the rest of the interrupted epoch, in the same order."""

import torch
from lightning.fabric.utilities.data import _replace_dunder_methods
from lightning.pytorch.utilities.data import _is_dataloader_shuffled, _update_dataloader
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from datamodules.resume import ResumableBatchSampler, ResumableDataLoader, SeededRandomSampler
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
