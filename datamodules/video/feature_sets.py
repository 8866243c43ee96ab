"""Generated YouCook2-format feature sets: what a new user brings to `--data.source features`.

    python -m datamodules.video.feature_sets OUT --videos 300 --seed 0 --noise 1.0
    casebook fit --config configs/step_aligner.yaml --model.pretrained null --data.source features \
        --data.annotations OUT/annotations.json --data.features_dir OUT/features

writes `OUT/annotations.json` (YouCook2's layout, 1 feature per second) and `OUT/features/<id>.npy`
(T×D float32). Each video lists 3 to 6 steps, "<verb> the <object>" from a vocabulary of verbs and
objects (a few sentence templates), played in the listed order between background stretches.
A frame's feature is a direction plus isotropic Gaussian noise:

    step frame        x_t = c(verb, object) + s_v / 2 + noise
    background frame  x_t = s_v + noise
    look-alike frame  x_t = c(verb', object') + s_v / 2 + noise   (labelled background)

`c(verb, object)` is the unit "concept" of a step, normalize(u_verb + u_object), from fixed random
unit directions u; `s_v` is the video's scene (one of a few unit directions). With probability
`lookalike_prob` a background stretch holds an unnarrated look-alike run: a step of the
vocabulary that the video does not list (half the time sharing its verb or its object with a
listed step), so it looks exactly like a step and only the step texts tell that it is not one.
`noise` is the noise's expected norm relative to a concept's (per-dimension std noise / sqrt(D)).
Look-alike runs are recorded under each video's extra key `lookalikes` (ignored by the parser).

Everything is a function of the seed (the concepts, scenes, videos and noise), so a seed and the
options name a set exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VERBS: tuple[str, ...] = (
    "cut", "stir", "pour", "heat", "shake", "mash", "peel", "boil", "fry", "grate", "roll", "season",
)  # fmt: skip
OBJECTS: tuple[str, ...] = (
    "tomato", "onion", "butter", "carrot", "potato", "egg", "lettuce", "cheese", "garlic",
    "pepper", "dough", "rice",
)  # fmt: skip
TEMPLATES: tuple[str, ...] = ("{verb} the {obj}", "{verb} {obj}", "now {verb} the {obj}")
NUM_SCENES = 8
SUBSETS = ("training", "validation", "testing")


@dataclass(frozen=True)
class FeatureSetSpec:
    """What a generated set looks like (the seed picks one such set).

    Args:
        videos: number of videos, split train / validation / test by `shares`.
        noise: expected norm of each frame's Gaussian noise relative to a concept's (1: equal).
        feature_dim: D of the features.
        lookalike_prob: chance each background stretch holds an unnarrated look-alike run.
        min_steps: fewest listed steps in a video.
        max_steps: most listed steps in a video.
        min_step_frames: shortest step (and look-alike) run, in frames (seconds).
        max_step_frames: longest step (and look-alike) run, in frames.
        min_gap_frames: shortest background stretch between steps, in frames.
        max_gap_frames: longest background stretch between steps (before a look-alike is added).
        shares: fractions of the videos in training and validation; the rest is testing.
    """

    videos: int = 300
    noise: float = 1.0
    feature_dim: int = 64
    lookalike_prob: float = 0.5
    min_steps: int = 3
    max_steps: int = 6
    min_step_frames: int = 5
    max_step_frames: int = 14
    min_gap_frames: int = 2
    max_gap_frames: int = 10
    shares: tuple[float, float] = (0.7, 0.15)

    def __post_init__(self) -> None:
        if self.videos < 3:
            raise ValueError(f"videos must be at least 3 (one per split), got {self.videos}")
        if self.noise < 0 or not 0 <= self.lookalike_prob <= 1:
            raise ValueError("noise must be >= 0 and lookalike_prob in [0, 1]")
        if not 1 <= self.min_steps <= self.max_steps <= len(VERBS) * len(OBJECTS) // 2:
            raise ValueError(f"steps must satisfy 1 <= {self.min_steps} <= {self.max_steps}")
        if not 1 <= self.min_step_frames <= self.max_step_frames:
            raise ValueError("step frames must satisfy 1 <= min_step_frames <= max_step_frames")
        if not 1 <= self.min_gap_frames <= self.max_gap_frames:
            raise ValueError("gap frames must satisfy 1 <= min_gap_frames <= max_gap_frames")


def unit_directions(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """(count, dim) random unit vectors."""
    directions = rng.standard_normal((count, dim))
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def concepts(rng: np.random.Generator, dim: int) -> np.ndarray:
    """(verbs, objects, dim): the unit concept of every step, normalize(u_verb + u_object)."""
    verbs, objects = unit_directions(rng, len(VERBS), dim), unit_directions(rng, len(OBJECTS), dim)
    pairs = verbs[:, None, :] + objects[None, :, :]
    return pairs / np.linalg.norm(pairs, axis=-1, keepdims=True)


def lookalike_step(rng: np.random.Generator, listed: list[tuple[int, int]]) -> tuple[int, int]:
    """A (verb, object) the video does not list: half the time sharing one word with a listed
    step (the hard case), otherwise any other step of the vocabulary."""
    while True:
        if rng.random() < 0.5:
            verb, obj = listed[int(rng.integers(len(listed)))]
            if rng.random() < 0.5:
                verb = int(rng.integers(len(VERBS)))
            else:
                obj = int(rng.integers(len(OBJECTS)))
        else:
            verb, obj = int(rng.integers(len(VERBS))), int(rng.integers(len(OBJECTS)))
        if (verb, obj) not in listed:
            return verb, obj


def make_video(
    spec: FeatureSetSpec, rng: np.random.Generator, concept: np.ndarray, scenes: np.ndarray
) -> tuple[np.ndarray, dict]:
    """(features (T, D) float32, its annotation entry without `subset`) of one video."""
    n = int(rng.integers(spec.min_steps, spec.max_steps + 1))
    codes = rng.choice(len(VERBS) * len(OBJECTS), n, replace=False)
    listed = [(int(c) // len(OBJECTS), int(c) % len(OBJECTS)) for c in codes]
    scene = scenes[int(rng.integers(len(scenes)))]
    pieces: list[np.ndarray] = []  # (frames, D) runs of clean features, in order
    annotations, lookalikes = [], []
    time = 0

    def run(direction: np.ndarray, low: int, high: int) -> tuple[int, int]:
        nonlocal time
        length = int(rng.integers(low, high + 1))
        pieces.append(np.repeat(direction[None], length, axis=0))
        time += length
        return time - length, time

    def background() -> None:
        run(scene, spec.min_gap_frames, spec.max_gap_frames)
        if rng.random() < spec.lookalike_prob:
            verb, obj = lookalike_step(rng, listed)
            start, end = run(
                concept[verb, obj] + scene / 2, spec.min_step_frames, spec.max_step_frames
            )
            text = TEMPLATES[0].format(verb=VERBS[verb], obj=OBJECTS[obj])
            lookalikes.append({"segment": [start, end], "looks_like": text})
            run(scene, 1, spec.min_gap_frames)  # background again, so it stays a run of its own

    background()
    for verb, obj in listed:
        start, end = run(concept[verb, obj] + scene / 2, spec.min_step_frames, spec.max_step_frames)
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        annotations.append(
            {
                "segment": [start, end],
                "sentence": template.format(verb=VERBS[verb], obj=OBJECTS[obj]),
            }
        )
        background()
    clean = np.concatenate(pieces)
    noise = rng.standard_normal(clean.shape) * (spec.noise / np.sqrt(spec.feature_dim))
    entry = {"duration": float(time), "annotations": annotations, "lookalikes": lookalikes}
    return (clean + noise).astype(np.float32), entry


def write_feature_set(
    out: str | Path, spec: FeatureSetSpec = FeatureSetSpec(), seed: int = 0
) -> tuple[Path, Path]:
    """Write `out/annotations.json` and `out/features/<video_id>.npy`; returns both paths."""
    out = Path(out)
    features_dir = out / "features"
    features_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    concept = concepts(rng, spec.feature_dim)
    scenes = unit_directions(rng, NUM_SCENES, spec.feature_dim)
    train = max(1, round(spec.shares[0] * spec.videos))
    val = max(1, min(round(spec.shares[1] * spec.videos), spec.videos - train - 1))
    subsets = np.array(
        [SUBSETS[0]] * train + [SUBSETS[1]] * val + [SUBSETS[2]] * (spec.videos - train - val)
    )[rng.permutation(spec.videos)]
    database = {}
    for index, subset in enumerate(subsets.tolist()):
        video_id = f"vid_{index:05d}"
        features, entry = make_video(spec, rng, concept, scenes)
        np.save(features_dir / f"{video_id}.npy", features)
        database[video_id] = {"subset": subset, **entry}
    annotations = out / "annotations.json"
    annotations.write_text(
        json.dumps({"database": database, "spec": dataclasses.asdict(spec), "seed": seed})
    )
    return annotations, features_dir


def main(argv: list[str] | None = None) -> int:
    """`python -m datamodules.video.feature_sets OUT [--videos N --seed S --noise X ...]`."""
    parser = argparse.ArgumentParser(
        prog="python -m datamodules.video.feature_sets",
        description="Write a seeded YouCook2-format feature set (annotations.json + features/*.npy).",
    )
    parser.add_argument("out", help="folder to write annotations.json and features/ into")
    parser.add_argument("--seed", type=int, default=0)
    defaults = FeatureSetSpec()
    for field in dataclasses.fields(FeatureSetSpec):
        if field.name != "shares":
            kind = type(getattr(defaults, field.name))
            parser.add_argument(f"--{field.name}", type=kind, default=getattr(defaults, field.name))
    args = vars(parser.parse_args(argv))
    out, seed = args.pop("out"), args.pop("seed")
    try:
        annotations, features_dir = write_feature_set(out, FeatureSetSpec(**args), seed)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"--data.annotations {annotations} --data.features_dir {features_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
