"""Class-balanced sampling: each class drawn about equally often, from (seed, epoch) only, so
that it resumes mid-epoch and every DDP rank takes its share of the same draws."""

from collections import Counter

import pytest
from lightning.fabric.utilities.data import _replace_dunder_methods
from lightning.pytorch.utilities.data import _update_dataloader
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from datamodules.resume import ResumableDataLoader, WeightedBatchSampler
from datamodules.video import InstructionalVideoDataModule

LABELS = [0] * 90 + [1] * 10  # a 9:1 imbalance
WEIGHTS = [1 / Counter(LABELS)[label] for label in LABELS]


def balanced_loader(seed: int = 0) -> ResumableDataLoader:
    batches = WeightedBatchSampler(None, 10, drop_last=False, weights=WEIGHTS, seed=seed)
    return ResumableDataLoader(list(range(100)), batch_sampler=batches)


def epoch(loader, number: int) -> list[int]:
    loader.batch_sampler.sampler.set_epoch(number)  # as Lightning does before every epoch
    return [i for batch in loader for i in batch.tolist()]


def test_balanced_sampler_draws_a_rare_class_as_often_as_a_common_one():
    loader = balanced_loader()
    draws = [i for number in range(10) for i in epoch(loader, number)]
    assert len(draws) == 1000
    rare = sum(LABELS[i] for i in draws) / len(draws)
    assert rare == pytest.approx(0.5, abs=0.05)  # 0.1 without balancing


def test_balanced_draws_depend_on_seed_and_epoch_and_resume_mid_epoch():
    loader = balanced_loader()
    first = epoch(loader, 0)
    assert epoch(loader, 0) == first and epoch(loader, 1) != first
    assert epoch(balanced_loader(seed=1), 0) != first
    loader.load_state_dict({"batches_yielded": 3})  # a checkpoint after three batches
    assert epoch(loader, 0) == first[30:]


def test_under_ddp_every_rank_takes_its_share_of_the_same_balanced_draws():
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = balanced_loader()
    single = epoch(loader, 2)
    shares = []
    for rank in (0, 1):
        distributed = DistributedSampler(list(range(100)), num_replicas=2, rank=rank, shuffle=False)
        rebuilt = _update_dataloader(loader, distributed)  # what Lightning does under DDP
        assert isinstance(rebuilt.batch_sampler, WeightedBatchSampler)
        distributed.set_epoch(2)
        shares.append([i for batch in rebuilt for i in batch.tolist()])
        assert len(rebuilt) == 5
    assert sorted(shares[0] + shares[1]) == sorted(single)


def test_balanced_sampling_draws_the_pretraining_pairs_by_step_meaning(make_youcook2, tmp_path):
    common = {"segment": [0, 1], "sentence": "whisk the eggs"}
    database = {f"vid_{i}": {"subset": "training", "annotations": [common]} for i in range(8)} | {
        "vid_rare": {
            "subset": "training",
            "annotations": [{"segment": [0, 1], "sentence": "heat the pan"}],
        },
        "vid_v": {"subset": "validation", "annotations": [common]},
        "vid_t": {"subset": "testing", "annotations": [common]},
    }
    annotations, features = make_youcook2(database, {video_id: 3 for video_id in database})
    data = InstructionalVideoDataModule(
        source="features",
        task="pretrain",
        annotations=str(annotations),
        features_dir=str(features),
        batch_size=9,
        cache_dir=str(tmp_path / "cache"),
        balanced_sampling=True,
    )
    loader = data.train_dataloader()
    assert isinstance(loader.batch_sampler, WeightedBatchSampler)
    texts = [t for number in range(20) for t in _texts(loader, number)]
    assert texts.count("heat the pan") / len(texts) == pytest.approx(
        0.5, abs=0.12
    )  # 1/9 unbalanced


def _texts(loader, number: int) -> list[str]:
    loader.batch_sampler.sampler.set_epoch(number)
    return [t for batch in loader for t in batch["texts"]]


def test_balanced_sampling_is_refused_for_whole_videos(tmp_path):
    with pytest.raises(ValueError, match="balanced_sampling"):
        InstructionalVideoDataModule(task="align", balanced_sampling=True, cache_dir=str(tmp_path))
