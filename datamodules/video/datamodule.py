"""InstructionalVideoDataModule: the data of the video step-alignment task.

    casebook fit --config configs/step_aligner.yaml --data.source=procedural --data.task=align

Sources (`--data.source`): `procedural` (seeded generated videos, the default), `features`
(YouCook2-style annotation JSON + `<video_id>.npy` T×D features at `--data.fps`), `video` (files
decoded with torchcodec or PyAV; `casebook predict` encodes them into features once).

Tasks (`--data.task`):
- `align`: whole videos. Batch: `frames` (B, T, 3, H, W) float in [0, 1] (procedural, video) or
  `features` (B, T, D) (features); `frame_mask` (B, T) bool; `frame_labels` (B, T) long, 0 =
  background, k = k-th step (1-based), -100 at padding; `segments` (B, S, 2) float, inclusive
  start and end frame; `step_mask` (B, S) bool; `step_input_ids`, `step_attention_mask`
  (B, S, L) long; `step_text_ids` (B, S) long, the same id for the same step meaning, -1 at
  padding; `step_heldout` (B, S) bool, a step never seen in training (procedural test split);
  `step_texts` list of lists; `video_ids` list.
- `pretrain`: (frame, step text) pairs, one per step, the frame drawn from inside the step's
  segment. Batch: `frames` (B, 3, H, W) or `features` (B, D); `input_ids`, `attention_mask`
  (B, L) long; `text_ids` (B,) long (equal ids in a batch are duplicate positives: mask them in
  the loss); `heldout` (B,) bool; `frame_index` (B,) long; `texts`; `video_ids`.

`vocab_size`, `pad_token_id`, `feature_dim` (features source) and `frame_shape` (frame sources)
are set in `__init__`, for LightningCLI's `link_arguments(..., apply_on="instantiate")`.
"""

from collections import Counter
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from casebook.common.errors import DataError
from datamodules.cache import default_cache_dir
from datamodules.resume import (
    ResumableBatchSampler,
    ResumableDataLoader,
    SeededRandomSampler,
    WeightedBatchSampler,
)
from datamodules.video.annotations import (
    feature_shape,
    frame_labels,
    read_annotation_json,
    training_sentences,
)
from datamodules.video.datasets import (
    AlignCollate,
    FeatureLoader,
    FrameTextPairDataset,
    PairCollate,
    StepAlignmentDataset,
    VideoCollate,
)
from datamodules.video.procedural import (
    DEFAULT_HELDOUT_STEPS,
    ProceduralVideoGenerator,
    Reorder,
    all_step_texts,
)
from datamodules.video.sources import (
    annotated_splits,
    features_locator,
    procedural_splits,
    video_locator,
)
from datamodules.video.tokenizer import cached_wordpiece, load_pretrained_tokenizer
from datamodules.video.video_files import (
    DecoderName,
    VideoFileDataset,
    VideoFrameLoader,
    list_videos,
    video_decoder_class,
)


class InstructionalVideoDataModule(L.LightningDataModule):
    """Instructional videos with ordered step texts, as whole videos or (frame, text) pairs."""

    def __init__(
        self,
        source: Literal["procedural", "features", "video"] = "procedural",
        task: Literal["align", "pretrain"] = "align",
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        num_train_videos: int = 256,
        num_val_videos: int = 64,
        num_test_videos: int = 64,
        frame_size: int = 32,
        min_steps: int = 3,
        max_steps: int = 6,
        min_step_frames: int = 8,
        max_step_frames: int = 16,
        min_gap_frames: int = 2,
        max_gap_frames: int = 10,
        noise_std: float = 0.04,
        heldout_steps: list[str] | None = None,
        skip_prob: float = 0.0,
        repeat_prob: float = 0.0,
        reorder_prob: float = 0.0,
        reorder: Reorder = "swap",
        lookalike_prob: float = 0.0,
        annotations: str | None = None,
        features_dir: str | None = None,
        video_dir: str | None = None,
        video_decoder: DecoderName = "auto",
        fps: float = 1.0,
        num_frames: int | None = None,
        tokenizer: str | None = None,
        max_text_length: int = 32,
        max_vocab_size: int = 4000,
        cache_dir: str | None = None,
        skip_bad_videos: bool = False,
        balanced_sampling: bool = False,
    ) -> None:
        """
        Args:
            source: where videos come from: procedural (generated), features (.npy), video (files).
            task: align (whole videos with their steps) or pretrain ((frame, step text) pairs).
            batch_size: videos (align) or pairs (pretrain) per batch.
            num_workers: DataLoader worker processes.
            seed: seed of the procedural generator (the same seed gives the same videos), of
                the training order and of the frame drawn from each step (pretrain).
            num_train_videos: procedural videos in the train split.
            num_val_videos: procedural videos in the valid split.
            num_test_videos: procedural videos in the test split (each has a held-out step).
            frame_size: side of the square frames, in pixels (procedural render, video decode).
            min_steps: fewest steps in a procedural video.
            max_steps: most steps in a procedural video.
            min_step_frames: shortest procedural step clip, in frames.
            max_step_frames: longest procedural step clip, in frames.
            min_gap_frames: shortest background stretch around procedural steps, in frames.
            max_gap_frames: longest background stretch around procedural steps, in frames.
            noise_std: standard deviation of the per-pixel sensor noise of procedural frames.
            heldout_steps: "<action> <object>" pairs seen only in test (None: a default six).
            skip_prob: procedural: chance each listed step is left out of the video (0: never).
            repeat_prob: procedural: chance each shown step is done again later (0: never).
            reorder_prob: procedural: chance a video plays its steps out of the listed order.
            reorder: procedural, out of order: swap (two neighbouring steps) or shuffle (any order).
            lookalike_prob: procedural: chance each background stretch holds an unnarrated
                look-alike clip (a listed object with another action, or its action on another
                object), labelled background (0: never).
            annotations: YouCook2-style annotation JSON (features and video sources).
            features_dir: folder of <video_id>.npy T×D feature arrays (features source).
            video_dir: folder of <video_id>.<ext> video files (video source).
            video_decoder: torchcodec, pyav (bundles FFmpeg), or auto: torchcodec if it loads.
            fps: features (or decoded frames) per second; converts segment seconds to frames.
            num_frames: resample every video to this many frames; None pads to the batch's longest.
            tokenizer: local folder of a pretrained tokenizer; None trains a WordPiece on the texts.
            max_text_length: step texts are truncated to this many tokens.
            max_vocab_size: vocabulary cap of the locally trained WordPiece tokenizer.
            cache_dir: where the trained tokenizer is cached (None: $CASEBOOK_CACHE or .cache/casebook).
            skip_bad_videos: skip videos with bad annotations or files (counted in one warning)
                instead of stopping.
            balanced_sampling: pretrain: draw training pairs with replacement, each step meaning
                (text id) equally often, however often it occurs (real annotations are long-tailed).
        """
        super().__init__()
        self.save_hyperparameters()
        if source not in ("procedural", "features", "video"):
            raise ValueError(f"source must be procedural, features or video, got {source!r}")
        if task not in ("align", "pretrain"):
            raise ValueError(f"task must be align or pretrain, got {task!r}")
        if balanced_sampling and task != "pretrain":
            raise ValueError(
                "balanced_sampling balances the pretrain pairs' step meanings; an align batch is"
                " whole videos, whose frame classes (background vs steps) a sampler cannot balance"
            )
        if source != "procedural" and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.source, self.task = source, task
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.generator: ProceduralVideoGenerator | None = None
        self.feature_dim: int | None = None
        self.frame_shape: tuple[int, int, int] | None = None
        self.input_key = "features" if source == "features" else "frames"
        self.videos: dict[str, list] | None = None

        corpus: list[str] = []
        if source == "procedural":
            self.generator = ProceduralVideoGenerator(
                seed=seed,
                frame_size=frame_size,
                min_steps=min_steps,
                max_steps=max_steps,
                min_step_frames=min_step_frames,
                max_step_frames=max_step_frames,
                min_gap_frames=min_gap_frames,
                max_gap_frames=max_gap_frames,
                noise_std=noise_std,
                heldout_steps=DEFAULT_HELDOUT_STEPS if heldout_steps is None else heldout_steps,
                skip_prob=skip_prob,
                repeat_prob=repeat_prob,
                reorder_prob=reorder_prob,
                reorder=reorder,
                lookalike_prob=lookalike_prob,
            )
            corpus = all_step_texts()
        elif annotations is not None:
            corpus = training_sentences(read_annotation_json(annotations))
        if source == "features":
            if annotations is None or features_dir is None:
                raise DataError(
                    "--data.source=features needs --data.annotations and --data.features_dir"
                )
            self.feature_dim = self._first_feature_dim(annotations, features_dir)
        else:
            self.frame_shape = (3, frame_size, frame_size)
        if source == "video":
            if video_dir is None:
                raise DataError("--data.source=video needs --data.video_dir")
            video_decoder_class(video_decoder)  # one clear line now if no decoder loads

        if tokenizer is not None:
            self.tokenizer = load_pretrained_tokenizer(tokenizer)
        elif corpus:
            self.tokenizer = cached_wordpiece(corpus, self.cache_dir, max_vocab_size)
        elif source == "video":  # predict-only: decoding needs no text
            self.tokenizer = None
        else:
            raise DataError(f"{annotations}: no training sentences to build a tokenizer from")
        self.vocab_size: int | None = len(self.tokenizer) if self.tokenizer else None
        self.pad_token_id: int | None = self.tokenizer.pad_token_id if self.tokenizer else None

    @staticmethod
    def _first_feature_dim(annotations: str, features_dir: str) -> int:
        """D of the first feature file present (all are checked against it in `setup`)."""
        for video_id in sorted(read_annotation_json(annotations)):
            path = Path(features_dir) / f"{video_id}.npy"
            if path.is_file():
                return feature_shape(path, video_id)[1]
        raise DataError(f"{features_dir}: no <video_id>.npy file for any video of {annotations}")

    def setup(self, stage: str | None = None) -> None:
        if self.videos is not None or (self.source == "video" and stage == "predict"):
            return
        hp = self.hparams
        if self.source == "procedural":
            sizes = {
                "train": hp.num_train_videos,
                "val": hp.num_val_videos,
                "test": hp.num_test_videos,
            }
            self.videos = procedural_splits(self.generator, sizes)
            return
        if hp.annotations is None:
            raise DataError(
                f"--data.source={self.source} needs --data.annotations to {stage or 'fit'}"
            )
        if self.source == "features":
            locate = features_locator(hp.features_dir, self.feature_dim)
        else:
            locate = video_locator(hp.video_dir, hp.fps, hp.video_decoder)
        self.videos = annotated_splits(hp.annotations, locate, hp.fps, hp.skip_bad_videos)

    def class_counts(self) -> dict[str, int]:
        """For `casebook doctor`: training examples per step meaning (named by its first text):
        frames, plus background frames, for align; (frame, text) pairs for pretrain."""
        self.setup()
        counts: Counter[str] = Counter()
        names: dict[int, str] = {}
        for video in self.videos["train"]:
            labels = frame_labels(video.segments, video.num_frames, video.repeats)
            if self.task == "align":
                counts["background"] += int((labels == 0).sum())
            for k, (text_id, text) in enumerate(zip(video.text_ids, video.texts), start=1):
                name = names.setdefault(text_id, text)
                counts[name] += int((labels == k).sum()) if self.task == "align" else 1
        return dict(counts)

    def split_keys(self) -> dict[str, dict[str, set]]:
        """For `casebook doctor`: video ids per split, and the step meanings (text ids) of the
        test split's held-out steps, which no training video may show."""
        self.setup()
        keys = {"video id": {s: {v.video_id for v in videos} for s, videos in self.videos.items()}}
        heldout = {t for v in self.videos["test"] for t, h in zip(v.text_ids, v.heldout) if h}
        seen = {t for v in self.videos["train"] for t in v.text_ids}
        keys["held-out step"] = {"train": seen, "test": heldout}
        return keys

    def _loader(self):
        if self.source == "procedural":
            return self.generator.render_frames
        if self.source == "features":
            return FeatureLoader()
        return VideoFrameLoader(
            self.hparams.fps, self.hparams.frame_size, self.hparams.video_decoder
        )

    def dataset(self, split: str) -> Dataset:
        """The `split` ("train", "val" or "test") dataset of the current task."""
        self.setup()
        if self.task == "align":
            return StepAlignmentDataset(
                self.videos[split], self._loader(), self.input_key, self.hparams.num_frames
            )
        return FrameTextPairDataset(
            self.videos[split],
            self._loader(),
            self.input_key,
            random_frame=split == "train",
            seed=self.hparams.seed,
        )

    def _dataloader(self, dataset: Dataset, collate) -> DataLoader:
        workers = self.hparams.num_workers
        # Its workers' seeds from a generator of its own, not the global one: a resumed run builds
        # its persistent validation iterator anew, the uninterrupted one not, so drawing them from
        # the global generator would leave training on other random draws after a resume.
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def _collate(self):
        if self.task == "align":
            return AlignCollate(self.tokenizer, self.hparams.max_text_length)
        return PairCollate(self.tokenizer, self.hparams.max_text_length)

    def train_dataloader(self) -> DataLoader:
        """Shuffled by (seed, epoch), or drawn balanced by step meaning (`balanced_sampling`), and
        resumable mid-epoch (`--ckpt_path last`)."""
        dataset, seed, workers = self.dataset("train"), self.hparams.seed, self.hparams.num_workers
        size = self.hparams.batch_size
        if self.hparams.balanced_sampling:
            weights = step_balancing_weights(dataset)
            batches = WeightedBatchSampler(None, size, drop_last=False, weights=weights, seed=seed)
        else:
            batches = ResumableBatchSampler(
                SeededRandomSampler(dataset, seed), size, drop_last=False
            )
        return ResumableDataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=self._collate(),
            generator=torch.Generator().manual_seed(seed),
        )

    def val_dataloader(self) -> DataLoader:
        return self._dataloader(self.dataset("val"), self._collate())

    def test_dataloader(self) -> DataLoader:
        return self._dataloader(self.dataset("test"), self._collate())

    def predict_dataloader(self) -> DataLoader:
        """video source: every file in `video_dir`, decoded for encoding into features;
        otherwise the test split as whole videos."""
        hp = self.hparams
        if self.source == "video":
            paths = list_videos(hp.video_dir)
            dataset = VideoFileDataset(
                paths, hp.fps, hp.num_frames, hp.frame_size, hp.video_decoder
            )
            return self._dataloader(dataset, VideoCollate())
        self.setup()
        dataset = StepAlignmentDataset(
            self.videos["test"], self._loader(), self.input_key, hp.num_frames
        )
        return self._dataloader(dataset, AlignCollate(self.tokenizer, hp.max_text_length))


def step_balancing_weights(pairs: FrameTextPairDataset) -> list[float]:
    """Per pair, 1 / (pairs of its step meaning): every text id is then drawn equally often."""
    text_ids = [pairs.videos[v].text_ids[k] for v, k in pairs.steps]
    counts = Counter(text_ids)
    return [1.0 / counts[t] for t in text_ids]
