"""Video files decoded with torchcodec (an optional extra: `pip install torchcodec`).

`list_videos` finds the files, `VideoFileDataset` decodes each one sampled at `fps` (or to a fixed
number of frames) for `casebook predict` to encode into `<video_id>.npy` features once; training
then reads those features with `--data.source=features`.
"""

import math
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from datamodules.errors import DataError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
INSTALL_HINT = "pip install torchcodec (it needs FFmpeg and a build matching your torch)"


def video_decoder_class() -> type:
    """torchcodec's VideoDecoder, or a DataError that says how to install it."""
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError as err:
        raise DataError(
            f"--data.source=video decodes files with torchcodec, which cannot be imported "
            f"({err}): {INSTALL_HINT}"
        ) from None
    return VideoDecoder


def list_videos(video_dir: str | Path) -> list[Path]:
    """Video files directly in `video_dir`, sorted by name; the stem is the video id."""
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise DataError(f"{video_dir}: video folder not found")
    return sorted(p for p in video_dir.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)


def _open(path: Path):
    try:
        return video_decoder_class()(str(path), dimension_order="NCHW")
    except DataError:
        raise
    except Exception as err:  # torchcodec raises RuntimeError/ValueError for unreadable files
        raise DataError(f"video {path.stem}: {path} cannot be decoded ({err})") from None


def _stream_span(decoder, path: Path) -> tuple[float, float]:
    """(begin, duration) of the video stream, in seconds."""
    meta = decoder.metadata
    begin = getattr(meta, "begin_stream_seconds", None) or 0.0
    duration = meta.duration_seconds
    if not duration or duration <= 0:
        raise DataError(f"video {path.stem}: {path} has no readable duration")
    return float(begin), float(duration)


def probe_num_frames(path: Path, fps: float) -> int:
    """How many frames sampling `path` at `fps` gives (frame i at i / fps seconds)."""
    _, duration = _stream_span(_open(path), path)
    return max(1, math.ceil(duration * fps - 1e-6))


def decode_frames(
    path: Path, seconds: torch.Tensor | list[float], frame_size: int, decoder=None
) -> torch.Tensor:
    """Frames played at `seconds` (from the video's start) as float32 (n, 3, S, S) in [0, 1].

    Each frame is resized (shorter side to `frame_size`) and centre-cropped to a square.
    """
    decoder = decoder or _open(path)
    begin, duration = _stream_span(decoder, path)
    times = torch.as_tensor(seconds, dtype=torch.float64).clamp(0.0, duration - 1e-3) + begin
    try:
        frames = decoder.get_frames_played_at(seconds=times.tolist()).data  # (n, C, H, W) uint8
    except Exception as err:  # torchcodec raises RuntimeError/IndexError on corrupt streams
        raise DataError(f"video {path.stem}: {path} cannot be decoded ({err})") from None
    frames = TF.resize(frames, size=frame_size, antialias=True)
    frames = TF.center_crop(frames, [frame_size, frame_size])
    return frames.float().div_(255.0)


class VideoFrameLoader:
    """Loads frames of an annotated video file by index, at `fps` frames per second."""

    def __init__(self, fps: float, frame_size: int) -> None:
        self.fps, self.frame_size = fps, frame_size

    def __call__(self, video, frames) -> torch.Tensor:
        seconds = torch.as_tensor(frames, dtype=torch.float64) / self.fps
        return decode_frames(video.path, seconds, self.frame_size)


class VideoFileDataset(Dataset):
    """Whole video files for `casebook predict`: each item is one video sampled at `fps`, or
    to exactly `num_frames` frames spread evenly over it when `num_frames` is set.

    Item: {"frames": (T, 3, S, S) float, "timestamps": (T,) seconds, "video_id": str}.
    """

    def __init__(
        self,
        paths: list[Path],
        fps: float = 1.0,
        num_frames: int | None = None,
        frame_size: int = 224,
    ) -> None:
        video_decoder_class()  # fail early, in one line, if torchcodec is missing
        self.paths, self.fps, self.num_frames, self.frame_size = paths, fps, num_frames, frame_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        decoder = _open(path)
        _, duration = _stream_span(decoder, path)
        if self.num_frames:
            seconds = (torch.arange(self.num_frames, dtype=torch.float64) + 0.5) * (
                duration / self.num_frames
            )
        else:
            count = max(1, math.ceil(duration * self.fps - 1e-6))
            seconds = torch.arange(count, dtype=torch.float64) / self.fps
        return {
            "frames": decode_frames(path, seconds, self.frame_size, decoder),
            "timestamps": seconds.float(),
            "video_id": path.stem,
        }
