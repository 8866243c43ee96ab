"""Shared fixtures: a private cache dir, and tiny YouCook2-style annotation + feature folders."""

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Tokenizers are cached in a temp dir, never in the working tree."""
    monkeypatch.setenv("CASEBOOK_CACHE", str(tmp_path_factory.mktemp("cache")))


FEATURE_DIM = 6


def write_youcook2(root: Path, database: dict, lengths: dict[str, int]) -> tuple[Path, Path]:
    """Write `annotations.json` and `features/<id>.npy` (feature t = [t, t, ...] + id offset)."""
    features = root / "features"
    features.mkdir(parents=True, exist_ok=True)
    for i, (video_id, num_frames) in enumerate(lengths.items()):
        rows = np.arange(num_frames, dtype=np.float32)[:, None] + 1000 * i
        np.save(features / f"{video_id}.npy", np.repeat(rows, FEATURE_DIM, axis=1))
    annotations = root / "annotations.json"
    annotations.write_text(json.dumps({"database": database}))
    return annotations, features


def tiny_database() -> tuple[dict, dict[str, int]]:
    """Three training videos, one validation, one test; 1 fps unless the test says otherwise."""
    database = {
        "vid_a": {
            "subset": "training",
            "annotations": [
                {"segment": [2, 5], "sentence": "Crack the eggs into a bowl"},
                {"segment": [7, 10], "sentence": "whisk the eggs"},
            ],
        },
        "vid_b": {
            "subset": "training",
            "annotations": [{"segment": [0, 3], "sentence": "whisk the eggs"}],
        },
        "vid_c": {
            "subset": "training",
            "annotations": [
                {"segment": [1, 2], "sentence": "heat the pan"},
                {"segment": [3, 6], "sentence": "pour the eggs into the pan"},
                {"segment": [8, 14], "sentence": "fold the omelette"},
            ],
        },
        "vid_v": {
            "subset": "validation",
            "annotations": [{"segment": [1, 4], "sentence": "slice the bread"}],
        },
        "vid_t": {
            "subset": "testing",
            "annotations": [{"segment": [0, 2], "sentence": "toast the bread"}],
        },
    }
    lengths = {"vid_a": 12, "vid_b": 5, "vid_c": 16, "vid_v": 6, "vid_t": 4}
    return database, lengths


@pytest.fixture
def youcook2(tmp_path):
    """(annotations.json, features dir) of `tiny_database()` at 1 feature per second."""
    database, lengths = tiny_database()
    return write_youcook2(tmp_path, database, lengths)


@pytest.fixture
def make_youcook2(tmp_path):
    """Write a custom (database, lengths) and return (annotations.json, features dir)."""
    return lambda database, lengths: write_youcook2(tmp_path, database, lengths)
