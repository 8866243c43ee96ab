"""Annotated videos: the record every video source produces, and the YouCook2-style parser.

The annotation JSON (YouCook2's layout; extra keys are ignored):

    {"database": {"<video_id>": {"subset": "training" | "validation" | "testing",
                                 "annotations": [{"segment": [start_s, end_s],
                                                  "sentence": "..."}, ...]}}}

Segments in seconds become inclusive frame indices at `fps` frames per second, frame i covering
[i / fps, (i + 1) / fps): start = floor(start_s * fps), end = ceil(end_s * fps) - 1, so at 1 fps
the segment [3, 7] covers frames 3, 4, 5, 6.
"""

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from casebook.common.errors import DataError

SUBSETS = {"training": "train", "validation": "val", "testing": "test"}


@dataclass(frozen=True)
class AnnotatedVideo:
    """One video's ordered steps; what the datasets need, whatever the source."""

    video_id: str
    num_frames: int
    # (steps, 2) int, inclusive frame indices, in the order of the step list (which need not be
    # the order on screen); (-1, -1) for a listed step the video skips
    segments: np.ndarray
    texts: list[str]
    text_ids: list[int]  # equal ids = same step meaning (synonyms, identical sentences)
    heldout: list[bool] = field(default_factory=list)  # step never seen in training
    path: Path | None = None  # the file frames or features are read from
    # (r, 3) int: step index, start, end of each later occurrence of a step done again; None: none
    repeats: np.ndarray | None = None


def frame_labels(
    segments: np.ndarray, num_frames: int, repeats: np.ndarray | None = None
) -> np.ndarray:
    """(num_frames,) int: 0 on background, k on the k-th step's frames (1-based), its repeated
    occurrences (`repeats` rows: step index, start, end) included; skipped steps (-1) nowhere."""
    labels = np.zeros(num_frames, dtype=np.int64)
    for k, (start, end) in enumerate(np.asarray(segments).tolist(), start=1):
        if start >= 0:
            labels[start : end + 1] = k  # on overlap the later step wins
    for k, start, end in np.asarray(repeats if repeats is not None else []).reshape(-1, 3).tolist():
        labels[start : end + 1] = k + 1
    return labels


def read_annotation_json(path: str | Path) -> dict[str, dict]:
    """The `database` mapping of a YouCook2-style annotation file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise DataError(f"{path}: no 'database' object mapping video ids to annotations")
    return data["database"]


def split_of(database: dict[str, dict], video_id: str, source: Path) -> str:
    subset = database[video_id].get("subset") if isinstance(database[video_id], dict) else None
    if subset not in SUBSETS:
        raise DataError(
            f"{source.name}: video {video_id}: subset {subset!r} is not one of {sorted(SUBSETS)}"
        )
    return SUBSETS[subset]


def training_sentences(database: dict[str, dict]) -> list[str]:
    """Sentences of the training subset (a tokenizer's corpus); malformed entries skipped."""
    sentences = []
    for entry in database.values():
        if isinstance(entry, dict) and entry.get("subset") == "training":
            for ann in entry.get("annotations") or []:
                if isinstance(ann, dict) and isinstance(ann.get("sentence"), str):
                    sentences.append(ann["sentence"])
    return sentences


def parse_video(
    source: Path,
    video_id: str,
    entry: dict,
    num_frames: int,
    fps: float,
    path: Path | None,
    text_id: Callable[[str], int],
) -> AnnotatedVideo:
    """Check one video's annotations against its length and convert seconds to frames."""
    where = f"{source.name}: video {video_id}"
    annotations = entry.get("annotations")
    if not annotations:
        raise DataError(f"{where}: has no annotations")
    duration = num_frames / fps
    segments, texts = [], []
    for k, ann in enumerate(annotations):
        segment = ann.get("segment") if isinstance(ann, dict) else None
        if (
            not isinstance(segment, list | tuple)
            or len(segment) != 2
            or not all(isinstance(s, int | float) for s in segment)
        ):
            raise DataError(f"{where}: annotation {k}: segment {segment!r} is not [start_s, end_s]")
        start_s, end_s = float(segment[0]), float(segment[1])
        sentence = ann.get("sentence")
        if not isinstance(sentence, str) or not sentence.strip():
            raise DataError(f"{where}: annotation {k}: empty sentence")
        if start_s < 0:
            raise DataError(f"{where}: annotation {k}: segment [{start_s}, {end_s}] is negative")
        if end_s <= start_s:
            raise DataError(
                f"{where}: annotation {k}: segment [{start_s}, {end_s}] is reversed or empty"
            )
        # One frame of slack: feature extractors round a video's length either way.
        if end_s > duration + 1 / fps or math.floor(start_s * fps) >= num_frames:
            raise DataError(
                f"{where}: annotation {k}: segment [{start_s}, {end_s}] s is past the video's "
                f"end ({duration:g} s, {num_frames} frames at {fps:g} fps)"
            )
        start = math.floor(start_s * fps)
        end = min(max(math.ceil(end_s * fps) - 1, start), num_frames - 1)
        segments.append((start, end))
        texts.append(sentence.strip())
    return AnnotatedVideo(
        video_id=video_id,
        num_frames=num_frames,
        segments=np.array(segments, dtype=np.int64).reshape(-1, 2),
        texts=texts,
        text_ids=[text_id(t) for t in texts],
        heldout=[False] * len(texts),
        path=path,
    )


def sentence_key(sentence: str) -> str:
    """Sentences equal up to case and spacing get the same text id."""
    return " ".join(sentence.lower().split())


def feature_shape(path: Path, video_id: str) -> tuple[int, int]:
    """(T, D) of a feature file, read from its header only."""
    if not path.is_file():
        raise DataError(f"video {video_id}: feature file {path} is missing")
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise DataError(
            f"video {video_id}: feature file {path} is not a .npy array ({err})"
        ) from None
    if array.ndim != 2 or array.shape[0] == 0:
        raise DataError(
            f"video {video_id}: feature file {path} has shape {array.shape}, expected (T>0, D)"
        )
    return int(array.shape[0]), int(array.shape[1])
