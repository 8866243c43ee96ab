"""Video files decoded with torchcodec, or with PyAV where torchcodec cannot load.

`list_videos` finds the files, `VideoFileDataset` decodes each one sampled at `fps` (or to a fixed
number of frames) for `casebook predict` to encode into `<video_id>.npy` features once; training
then reads those features with `--data.source=features`.

Two decoders, one interface (torchcodec's: `metadata` and `get_frames_played_at`):
- `torchcodec` (an optional extra: `pip install torchcodec`) is PyTorch's decoder and the faster
  one, but it links against the system's FFmpeg shared libraries (versions 4 to 8), which a fresh
  machine often lacks;
- `pyav` (`av`, a dependency) bundles its own FFmpeg in the wheel, so decoding works from a clean
  install with no system package. It is used when torchcodec is missing or cannot load.
`--data.video_decoder` picks one (`auto` tries torchcodec first).
"""

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Literal, get_args

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from casebook.common.errors import DataError, first_line

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
DecoderName = Literal["auto", "torchcodec", "pyav"]  # `--data.video_decoder`
VIDEO_DECODERS = get_args(DecoderName)
INSTALL_HINT = {
    "torchcodec": "pip install torchcodec (it needs FFmpeg 4-8 shared libraries and a build "
    "matching your torch), or use --data.video_decoder=pyav",
    "pyav": "pip install av (its wheel bundles FFmpeg)",
}


class PyAVDecoder:
    """PyAV behind torchcodec's `VideoDecoder` interface (the part casebook uses).

    Hand-written because PyAV has no "frame played at t" call: frames are decoded in order and
    the last one presented at or before each requested time is kept, so memory holds only the
    requested frames.
    """

    def __init__(self, source: str, dimension_order: str = "NCHW") -> None:
        import av  # noqa: PLC0415 (only needed for the video source)

        if dimension_order != "NCHW":
            raise ValueError("PyAVDecoder returns NCHW frames only")
        self.source = source
        with av.open(source) as container:
            stream = container.streams.video[0]
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            begin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        self.metadata = SimpleNamespace(duration_seconds=duration, begin_stream_seconds=begin)

    def get_frames_played_at(self, seconds: list[float]) -> SimpleNamespace:
        import av  # noqa: PLC0415

        order = sorted(range(len(seconds)), key=lambda i: seconds[i])
        picked: list[torch.Tensor | None] = [None] * len(seconds)
        previous, cursor = None, 0
        with av.open(self.source) as container:
            for frame in container.decode(video=0):
                shown = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
                while cursor < len(order) and seconds[order[cursor]] < shown - 1e-6:
                    picked[order[cursor]], cursor = previous, cursor + 1
                previous = frame
                if cursor == len(order):
                    break
        for index in order[cursor:]:
            picked[index] = previous
        if any(frame is None for frame in picked):  # a time before the first frame
            first = next(frame for frame in picked if frame is not None)
            picked = [frame or first for frame in picked]
        data = torch.stack(
            [
                torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                for frame in picked
            ]
        )  # (n, 3, H, W) uint8
        return SimpleNamespace(data=data)


def video_decoder_class(backend: DecoderName = "auto") -> type:
    """The decoder class for `backend` (`auto`: torchcodec if it loads, else PyAV), or a
    DataError that says how to install it."""
    if backend not in VIDEO_DECODERS:
        raise DataError(
            f"--data.video_decoder={backend}: choose one of {', '.join(VIDEO_DECODERS)}"
        )
    errors = {}
    if backend in ("auto", "torchcodec"):
        try:
            from torchcodec.decoders import VideoDecoder  # noqa: PLC0415

            return VideoDecoder
        except Exception as err:  # ImportError, or RuntimeError when FFmpeg's libraries are missing
            errors["torchcodec"] = err
    if backend in ("auto", "pyav"):
        try:
            import av  # noqa: F401, PLC0415

            return PyAVDecoder
        except ImportError as err:
            errors["pyav"] = err
    reasons = "; ".join(
        f"{name} cannot be loaded ({first_line(err)})" for name, err in errors.items()
    )
    hints = " or ".join(INSTALL_HINT[name] for name in errors)
    raise DataError(f"--data.source=video decodes files, but {reasons}: {hints}")


def list_videos(video_dir: str | Path) -> list[Path]:
    """Video files directly in `video_dir`, sorted by name; the stem is the video id."""
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise DataError(f"{video_dir}: video folder not found")
    return sorted(p for p in video_dir.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)


def _open(path: Path, backend: DecoderName = "auto"):
    try:
        return video_decoder_class(backend)(str(path), dimension_order="NCHW")
    except DataError:
        raise
    except Exception as err:  # torchcodec: RuntimeError/ValueError; PyAV: av.error.*
        raise DataError(f"video {path.stem}: {path} cannot be decoded ({err})") from None


def _stream_span(decoder, path: Path) -> tuple[float, float]:
    """(begin, duration) of the video stream, in seconds."""
    meta = decoder.metadata
    begin = getattr(meta, "begin_stream_seconds", None) or 0.0
    duration = meta.duration_seconds
    if not duration or duration <= 0:
        raise DataError(f"video {path.stem}: {path} has no readable duration")
    return float(begin), float(duration)


def probe_num_frames(path: Path, fps: float, backend: DecoderName = "auto") -> int:
    """How many frames sampling `path` at `fps` gives (frame i at i / fps seconds)."""
    _, duration = _stream_span(_open(path, backend), path)
    return max(1, math.ceil(duration * fps - 1e-6))


def decode_frames(
    path: Path,
    seconds: torch.Tensor | list[float],
    frame_size: int,
    decoder=None,
    backend: DecoderName = "auto",
) -> torch.Tensor:
    """Frames played at `seconds` (from the video's start) as float32 (n, 3, S, S) in [0, 1].

    Each frame is resized (shorter side to `frame_size`) and centre-cropped to a square.
    """
    decoder = decoder or _open(path, backend)
    begin, duration = _stream_span(decoder, path)
    times = torch.as_tensor(seconds, dtype=torch.float64).clamp(0.0, duration - 1e-3) + begin
    try:
        frames = decoder.get_frames_played_at(seconds=times.tolist()).data  # (n, C, H, W) uint8
    except Exception as err:  # RuntimeError/IndexError (torchcodec), av.error.* on corrupt streams
        raise DataError(f"video {path.stem}: {path} cannot be decoded ({err})") from None
    frames = TF.resize(frames, size=frame_size, antialias=True)
    frames = TF.center_crop(frames, [frame_size, frame_size])
    return frames.float().div_(255.0)


class VideoFrameLoader:
    """Loads frames of an annotated video file by index, at `fps` frames per second."""

    def __init__(self, fps: float, frame_size: int, backend: DecoderName = "auto") -> None:
        self.fps, self.frame_size, self.backend = fps, frame_size, backend

    def __call__(self, video, frames) -> torch.Tensor:
        seconds = torch.as_tensor(frames, dtype=torch.float64) / self.fps
        return decode_frames(video.path, seconds, self.frame_size, backend=self.backend)


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
        backend: DecoderName = "auto",
    ) -> None:
        video_decoder_class(backend)  # fail early, in one line, if no decoder loads
        self.paths, self.fps, self.num_frames, self.frame_size = paths, fps, num_frames, frame_size
        self.backend = backend

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        decoder = _open(path, self.backend)
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
