import random

from lightning.fabric.utilities.data import _replace_dunder_methods
from lightning.pytorch.utilities.data import _update_dataloader
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from datamodules.speech.batching import DurationBatchSampler, EpochSampler

_rng = random.Random(0)
DURATIONS = [_rng.uniform(1.0, 12.0) for _ in range(400)]


def _padding_fraction(batches):
    padded = sum(max(DURATIONS[i] for i in b) * len(b) for b in batches)
    return 1 - sum(DURATIONS) / padded


def test_bucketing_groups_similar_lengths():
    sampler = DurationBatchSampler(
        EpochSampler(range(400)), 8, durations=DURATIONS, shuffle=True, seed=0
    )
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(400))
    rng = random.Random(1)
    shuffled = rng.sample(range(400), 400)
    unbucketed = [shuffled[i : i + 8] for i in range(0, 400, 8)]
    assert _padding_fraction(batches) < 0.1 < _padding_fraction(unbucketed)


def test_batches_respect_the_padded_seconds_budget():
    sampler = DurationBatchSampler(
        None, 64, durations=DURATIONS, max_batch_seconds=40.0, shuffle=False
    )
    batches = list(sampler)
    assert all(max(DURATIONS[i] for i in b) * len(b) <= 40.0 for b in batches)
    assert len(batches[0]) > len(batches[-1])  # short utterances make bigger batches


def test_train_order_is_seeded_and_changes_each_epoch():
    def make():
        return DurationBatchSampler(
            EpochSampler(range(400)), 8, durations=DURATIONS, shuffle=True, seed=3
        )

    a, b = make(), make()
    assert list(a) == list(b)
    first = list(a)
    a.sampler.set_epoch(1)  # what Lightning calls each epoch
    assert list(a) != first


def test_shortest_first_epochs_go_from_the_shortest_utterance_up_then_shuffle():
    sampler = DurationBatchSampler(
        EpochSampler(range(400)), 8, durations=DURATIONS, shuffle=True, shortest_first_epochs=1
    )
    first = list(sampler)
    longest = [max(DURATIONS[i] for i in batch) for batch in first]
    assert longest == sorted(longest) and sorted(i for b in first for i in b) == list(range(400))
    sampler.sampler.set_epoch(1)
    later = [max(DURATIONS[i] for i in batch) for batch in sampler]
    assert later != sorted(later)  # shuffled again from the second epoch


def test_ranks_get_equal_disjoint_batches_when_lightning_injects_a_distributed_sampler():
    dataset = list(range(101))
    durations = DURATIONS[:101]
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = DataLoader(
            dataset,
            batch_sampler=DurationBatchSampler(
                EpochSampler(dataset), 4, durations=durations, shuffle=True, seed=0
            ),
        )
    per_rank = []
    for rank in (0, 1):
        distributed = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=False)
        per_rank.append(list(_update_dataloader(loader, distributed).batch_sampler))
    assert len(per_rank[0]) == len(per_rank[1])
    seen = [i for batches in per_rank for b in batches for i in b]
    assert set(seen) == set(dataset)
    assert len(seen) - len(dataset) < 4  # at most one batch repeated to even the ranks out
