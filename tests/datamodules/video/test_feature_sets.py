"""Generated YouCook2-format feature sets: parseable, seeded, and with step look-alikes."""

import json

import numpy as np
import pytest

from datamodules.video import InstructionalVideoDataModule
from datamodules.video.feature_sets import FeatureSetSpec, main, write_feature_set

SMALL = FeatureSetSpec(videos=20, feature_dim=16, max_gap_frames=6)


def read(annotations):
    return json.loads(annotations.read_text())["database"]


def test_a_generated_set_loads_as_features_with_its_splits_shapes_and_steps(tmp_path):
    annotations, features_dir = write_feature_set(tmp_path, SMALL, seed=0)
    database = read(annotations)
    assert len(database) == 20
    data = InstructionalVideoDataModule(
        source="features",
        annotations=str(annotations),
        features_dir=str(features_dir),
        cache_dir=str(tmp_path / "cache"),
    )
    data.setup()
    assert data.feature_dim == 16
    assert {split: len(videos) for split, videos in data.videos.items()} == {
        "train": 14,
        "val": 3,
        "test": 3,
    }
    for video in data.videos["train"]:
        entry = database[video.video_id]
        features = np.load(features_dir / f"{video.video_id}.npy")
        assert features.shape == (entry["duration"], 16) and features.dtype == np.float32
        assert video.num_frames == features.shape[0]
        assert SMALL.min_steps <= len(video.texts) <= SMALL.max_steps
        # steps in the listed order, one run each, inside the video, never overlapping
        starts, ends = video.segments[:, 0], video.segments[:, 1]
        assert (starts >= 0).all() and (ends < video.num_frames).all()
        assert (starts[1:] > ends[:-1]).all()
        lengths = ends - starts + 1
        assert lengths.min() >= SMALL.min_step_frames and lengths.max() <= SMALL.max_step_frames


def test_the_same_seed_writes_the_same_set_and_another_seed_another(tmp_path):
    first, first_features = write_feature_set(tmp_path / "a", SMALL, seed=3)
    again, again_features = write_feature_set(tmp_path / "b", SMALL, seed=3)
    other, other_features = write_feature_set(tmp_path / "c", SMALL, seed=4)
    assert read(first) == read(again)
    assert read(first) != read(other)
    for video_id in read(first):
        name = f"{video_id}.npy"
        assert np.array_equal(np.load(first_features / name), np.load(again_features / name))
    assert not np.array_equal(
        np.load(first_features / "vid_00000.npy"), np.load(other_features / "vid_00000.npy")
    )


def concept_runs(features: np.ndarray, segments) -> list[np.ndarray]:
    """Without noise: each run's concept, its frames minus half the video's scene (frame 0 is
    always background, whose feature is the scene itself)."""
    scene = features[0]
    return [features[start:end] - scene / 2 for start, end in segments]


def test_lookalikes_look_exactly_like_a_step_the_video_does_not_list(tmp_path):
    spec = FeatureSetSpec(videos=40, feature_dim=16, noise=0.0, lookalike_prob=0.5)
    annotations, features_dir = write_feature_set(tmp_path, spec, seed=1)
    database = read(annotations)
    step_concepts: dict[str, np.ndarray] = {}  # "verb the object" -> its runs' concept
    for video_id, entry in database.items():
        features = np.load(features_dir / f"{video_id}.npy")
        ends = [(start, end) for start, end in (a["segment"] for a in entry["annotations"])]
        for ann, run in zip(entry["annotations"], concept_runs(features, ends)):
            words = ann["sentence"].replace("now ", "").replace(" the ", " ").split()
            assert np.allclose(run, run[0], atol=1e-6)  # one concept over the whole run
            step_concepts.setdefault(f"{words[0]} the {words[1]}", run[0])
    lookalikes = [(v, look) for v, entry in database.items() for look in entry["lookalikes"]]
    assert len(lookalikes) >= len(database) // 2  # "often"
    matched = 0
    for video_id, look in lookalikes:
        entry = database[video_id]
        listed = {
            a["sentence"].replace("now ", "").replace(" the ", " ") for a in entry["annotations"]
        }
        assert look["looks_like"].replace(" the ", " ") not in listed
        start, end = look["segment"]
        labels = np.zeros(int(entry["duration"]), dtype=bool)
        for a in entry["annotations"]:
            labels[a["segment"][0] : a["segment"][1]] = True
        assert not labels[start:end].any()  # it is background
        features = np.load(features_dir / f"{video_id}.npy")
        (run,) = concept_runs(features, [(start, end)])
        if look["looks_like"] in step_concepts:  # the same features as that step elsewhere
            assert np.allclose(run, step_concepts[look["looks_like"]], atol=1e-5)
            matched += 1
    assert matched >= 5


def test_noise_is_the_asked_share_of_a_concept(tmp_path):
    clean, clean_dir = write_feature_set(tmp_path / "clean", FeatureSetSpec(videos=6, noise=0.0), 2)
    noisy, noisy_dir = write_feature_set(tmp_path / "noisy", FeatureSetSpec(videos=6, noise=1.5), 2)
    difference = np.concatenate(
        [np.load(noisy_dir / f"{v}.npy") - np.load(clean_dir / f"{v}.npy") for v in read(clean)]
    )
    assert np.linalg.norm(difference, axis=1).mean() == pytest.approx(1.5, rel=0.05)


def test_the_command_writes_a_set_and_names_the_flags_that_read_it(tmp_path, capsys):
    assert main([str(tmp_path / "set"), "--videos", "5", "--seed", "2", "--noise", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert f"--data.annotations {tmp_path / 'set' / 'annotations.json'}" in printed
    assert len(list((tmp_path / "set" / "features").glob("*.npy"))) == 5
    assert main([str(tmp_path / "bad"), "--videos", "2"]) == 2
    assert "videos must be at least 3" in capsys.readouterr().err
