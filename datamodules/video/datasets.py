"""The two views of annotated videos, and their collates.

- `StepAlignmentDataset` (task "align"): whole videos with their ordered steps.
- `FrameTextPairDataset` (task "pretrain"): one frame (or feature vector) from inside a step's
  segment, paired with that step's text, for contrastive image-text training.

Frames come from a loader, `loader(video, frame_indices) -> (n, ...)`: rendered (procedural),
read from .npy (features) or decoded (video), so the datasets do not care which source.
"""

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from casebook.common.errors import DataError
from datamodules.resume import EpochItem, item_generator
from datamodules.video.annotations import AnnotatedVideo, frame_labels

IGNORE_INDEX = -100  # frame_labels at padding, as torch.nn.functional.cross_entropy expects

FrameLoader = Callable[[AnnotatedVideo, np.ndarray], torch.Tensor]


class FeatureLoader:
    """Rows of a video's T×D .npy feature file, as float32."""

    def __call__(self, video: AnnotatedVideo, frames: np.ndarray) -> torch.Tensor:
        try:
            array = np.load(video.path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise DataError(f"video {video.video_id}: cannot read {video.path} ({err})") from None
        return torch.from_numpy(np.ascontiguousarray(array[np.asarray(frames)], dtype=np.float32))


def resample(
    video: AnnotatedVideo, num_frames: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(frame indices to load, segments and repeats in the new indexing).

    With `num_frames`, the video is resampled to exactly that many evenly spaced frames and each
    segment keeps the new frames that fall inside it (at least the one nearest its middle);
    a skipped step's (-1, -1) stays.
    """
    if not num_frames:
        return np.arange(video.num_frames), np.asarray(video.segments), video.repeats
    source = np.round(np.linspace(0, video.num_frames - 1, num_frames)).astype(np.int64)

    def moved(start: int, end: int) -> tuple[int, int]:
        if start < 0:
            return -1, -1
        inside = np.flatnonzero((source >= start) & (source <= end))
        if len(inside) == 0:
            inside = np.array([int(np.argmin(np.abs(source - (start + end) / 2)))])
        return inside[0], inside[-1]

    segments = [moved(start, end) for start, end in np.asarray(video.segments).tolist()]
    repeats = None
    if video.repeats is not None:
        repeats = np.array(
            [(k, *moved(s, e)) for k, s, e in video.repeats.tolist()], dtype=np.int64
        ).reshape(-1, 3)
    return source, np.array(segments, dtype=np.int64).reshape(-1, 2), repeats


class StepAlignmentDataset(Dataset):
    """Item: one whole video, {input_key: (T, ...), "segments", "frame_labels", steps...}."""

    def __init__(
        self,
        videos: Sequence[AnnotatedVideo],
        loader: FrameLoader,
        input_key: str = "frames",
        num_frames: int | None = None,
    ) -> None:
        self.videos, self.loader, self.input_key, self.num_frames = (
            videos,
            loader,
            input_key,
            num_frames,
        )

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        video = self.videos[index]
        frames, segments, repeats = resample(video, self.num_frames)
        return {
            self.input_key: self.loader(video, frames),
            "segments": torch.as_tensor(segments, dtype=torch.float32),
            "frame_labels": torch.from_numpy(frame_labels(segments, len(frames), repeats)),
            "step_texts": list(video.texts),
            "step_text_ids": torch.as_tensor(video.text_ids, dtype=torch.long),
            "step_heldout": torch.as_tensor(video.heldout or [False] * len(video.texts)),
            "video_id": video.video_id,
        }


class FrameTextPairDataset(Dataset):
    """Item: one frame inside a step's segment and that step's text; one item per step the video
    shows (a skipped step has no frame to pair).

    With `random_frame` (training) the frame is drawn anew each epoch, from
    `item_generator(seed, epoch, index)` (`EpochItem` keys from the training loader; a plain
    index draws as epoch 0), so a resumed run draws the frames the uninterrupted one did, with
    DataLoader workers too; otherwise it is the segment's middle frame, so validation and test
    batches are fixed.
    """

    keyed_by_epoch = True  # see datamodules.resume

    def __init__(
        self,
        videos: Sequence[AnnotatedVideo],
        loader: FrameLoader,
        input_key: str = "frames",
        random_frame: bool = True,
        seed: int = 0,
    ) -> None:
        self.videos, self.loader, self.input_key = videos, loader, input_key
        self.random_frame, self.seed = random_frame, seed
        self.steps = [
            (v, k)
            for v, video in enumerate(videos)
            for k in range(len(video.texts))
            if video.segments[k][0] >= 0
        ]

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, key: int | EpochItem) -> dict:
        epoch, index = key if isinstance(key, EpochItem) else (0, key)
        v, k = self.steps[index]
        video = self.videos[v]
        start, end = (int(i) for i in video.segments[k])
        if self.random_frame:
            generator = item_generator(self.seed, epoch, index)
            frame = int(torch.randint(start, end + 1, (), generator=generator))
        else:
            frame = (start + end) // 2
        return {
            self.input_key: self.loader(video, np.array([frame]))[0],
            "text": video.texts[k],
            "text_id": video.text_ids[k],
            "heldout": bool(video.heldout[k]) if video.heldout else False,
            "frame_index": frame,
            "video_id": video.video_id,
        }


def _pad_stack(tensors: list[torch.Tensor], value: float = 0.0) -> torch.Tensor:
    """Stack tensors that differ only in their first dim, padding it with `value` at the end."""
    longest = max(len(t) for t in tensors)
    out = tensors[0].new_full((len(tensors), longest, *tensors[0].shape[1:]), value)
    for i, t in enumerate(tensors):
        out[i, : len(t)] = t
    return out


class AlignCollate:
    """Pads videos (frames) and step lists (steps), tokenizes step texts.

    Padded steps hold the tokens of an empty text ([CLS] [SEP]), not all-padding rows, so a text
    encoder never softmaxes over a fully masked row; `step_mask` marks them as padding.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_text_length: int = 32) -> None:
        self.tokenizer, self.max_text_length = tokenizer, max_text_length

    def __call__(self, items: list[dict]) -> dict:
        input_key = "features" if "features" in items[0] else "frames"
        lengths = torch.tensor([len(item[input_key]) for item in items])
        num_steps = torch.tensor([len(item["step_texts"]) for item in items])
        longest, most_steps = int(lengths.max()), int(num_steps.max())
        texts = [t for item in items for t in item["step_texts"]]
        texts += [""] * (len(items) * most_steps - len(texts))
        tokens = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_text_length,
            return_tensors="pt",
        )
        step_mask = torch.arange(most_steps)[None] < num_steps[:, None]  # (batch, steps)
        # Place real texts at their (video, step) slot, padding texts everywhere else.
        order = torch.full((len(items), most_steps), -1, dtype=torch.long)
        order[step_mask] = torch.arange(int(num_steps.sum()))
        order[~step_mask] = torch.arange(int(num_steps.sum()), len(texts))
        return {
            input_key: _pad_stack([item[input_key] for item in items]),
            "frame_mask": torch.arange(longest)[None] < lengths[:, None],  # (batch, frames)
            "frame_labels": _pad_stack([item["frame_labels"] for item in items], IGNORE_INDEX),
            "segments": _pad_stack([item["segments"] for item in items]),  # (batch, steps, 2)
            "step_mask": step_mask,
            "step_input_ids": tokens["input_ids"][order],  # (batch, steps, tokens)
            "step_attention_mask": tokens["attention_mask"][order],
            "step_text_ids": _pad_stack([item["step_text_ids"] for item in items], -1),
            "step_heldout": _pad_stack([item["step_heldout"] for item in items], False),
            "step_texts": [item["step_texts"] for item in items],
            "video_ids": [item["video_id"] for item in items],
        }


class PairCollate:
    """Stacks (frame, text) pairs and tokenizes the texts.

    `text_ids` equal within a batch mean the same step (synonyms included): a contrastive loss
    should treat those pairs as positives too rather than as negatives.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_text_length: int = 32) -> None:
        self.tokenizer, self.max_text_length = tokenizer, max_text_length

    def __call__(self, items: list[dict]) -> dict:
        input_key = "features" if "features" in items[0] else "frames"
        texts = [item["text"] for item in items]
        tokens = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_text_length,
            return_tensors="pt",
        )
        return {
            input_key: torch.stack([item[input_key] for item in items]),
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
            "text_ids": torch.tensor([item["text_id"] for item in items]),
            "heldout": torch.tensor([item["heldout"] for item in items]),
            "frame_index": torch.tensor([item["frame_index"] for item in items]),
            "texts": texts,
            "video_ids": [item["video_id"] for item in items],
        }


class VideoCollate:
    """Pads decoded whole videos for `casebook predict` (frames, frame_mask, timestamps)."""

    def __call__(self, items: list[dict]) -> dict:
        lengths = torch.tensor([len(item["frames"]) for item in items])
        return {
            "frames": _pad_stack([item["frames"] for item in items]),
            "frame_mask": torch.arange(int(lengths.max()))[None] < lengths[:, None],
            "timestamps": _pad_stack([item["timestamps"] for item in items]),
            "video_ids": [item["video_id"] for item in items],
        }
