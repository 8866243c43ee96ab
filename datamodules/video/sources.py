"""What each `--data.source` turns into: videos per split, and a loader for their frames."""

from collections.abc import Callable
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn

from casebook.common.errors import DataError
from datamodules.video.annotations import (
    AnnotatedVideo,
    feature_shape,
    parse_video,
    read_annotation_json,
    sentence_key,
    split_of,
)
from datamodules.video.procedural import ProceduralVideoGenerator
from datamodules.video.video_files import DecoderName, list_videos, probe_num_frames

SPLITS = ("train", "val", "test")


def procedural_splits(
    generator: ProceduralVideoGenerator, sizes: dict[str, int]
) -> dict[str, list[AnnotatedVideo]]:
    """Specs of `sizes[split]` videos per split (cheap; frames are rendered on demand)."""
    return {
        split: [generator.make_video(split, i) for i in range(sizes[split])] for split in SPLITS
    }


def annotated_splits(
    annotations: str | Path,
    locate: Callable[[str], tuple[Path, int]],
    fps: float,
    skip_bad_videos: bool = False,
) -> dict[str, list[AnnotatedVideo]]:
    """Parse a YouCook2-style annotation file into videos per split.

    `locate(video_id)` gives the file holding the video's frames or features and its length in
    frames (raising DataError if it is missing). Bad videos raise, or with `skip_bad_videos`
    are skipped and counted in one warning.
    """
    source = Path(annotations)
    database = read_annotation_json(source)
    splits: dict[str, list[AnnotatedVideo]] = {split: [] for split in SPLITS}
    text_ids: dict[str, int] = {}

    def text_id(sentence: str) -> int:
        return text_ids.setdefault(sentence_key(sentence), len(text_ids))

    problems = []
    for video_id in sorted(database):
        try:
            split = split_of(database, video_id, source)
            path, num_frames = locate(video_id)
            video = parse_video(
                source, video_id, database[video_id], num_frames, fps, path, text_id
            )
        except DataError as err:
            if not skip_bad_videos:
                raise
            problems.append(str(err))
            continue
        splits[split].append(video)
    if problems:
        rank_zero_warn(f"skipped {len(problems)} bad videos; first: {problems[0]}")
    return splits


def features_locator(
    features_dir: str | Path, feature_dim: int
) -> Callable[[str], tuple[Path, int]]:
    """`<features_dir>/<video_id>.npy`, which must be T×`feature_dim`."""
    features_dir = Path(features_dir)

    def locate(video_id: str) -> tuple[Path, int]:
        path = features_dir / f"{video_id}.npy"
        num_frames, dim = feature_shape(path, video_id)
        if dim != feature_dim:
            raise DataError(
                f"video {video_id}: feature file {path} has D={dim}, other videos have D={feature_dim}"
            )
        return path, num_frames

    return locate


def video_locator(
    video_dir: str | Path, fps: float, backend: DecoderName = "auto"
) -> Callable[[str], tuple[Path, int]]:
    """The file `<video_dir>/<video_id>.<ext>`, its length probed at `fps` with `backend`."""
    files = {path.stem: path for path in list_videos(video_dir)}

    def locate(video_id: str) -> tuple[Path, int]:
        if video_id not in files:
            raise DataError(f"video {video_id}: no video file named {video_id}.* in {video_dir}")
        return files[video_id], probe_num_frames(files[video_id], fps, backend)

    return locate
