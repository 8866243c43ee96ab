"""Search across videos: where, in a folder of videos, does a text query happen?

    casebook search runs/clip_pretrainer/predictions "cut the tomato" [--top_k 5] \\
        [--encoders runs/clip_pretrainer/encoders] [--aligner runs/step_aligner/checkpoints/best.ckpt]
    casebook search FEATURES --evaluate A.json     # moment retrieval on A.json's testing subset

The folder holds `<video_id>.npy` frame embeddings (T, embed_dim), as `casebook predict` writes
them (`ClipPretrainer.predict_step`); the query is embedded by the same ClipPretrainer's text
encoder. The answer is the top-k moments (video id, start s, end s, score), printed as a table
and written as JSON (`--out`).

- Index (`MomentIndex`, cached in `<folder>/.search_index`, rebuilt when a file changes): every
  frame L2-normalized and stored once as float16 in one memory-mapped file, plus the mean of each
  window of `window` frames (every `stride` frames) in memory as float32. A window's mean
  embedding dotted with the query is exactly the mean cosine of its frames, so one matrix product
  over the windows finds the candidate videos, and only their frames are read.
- Proposals (`propose_moments`): in each candidate video, the per-frame scores (cosine to the
  query; with `--aligner`, the cosine times a trained StepAligner's probability of the query step)
  are smoothed over three frames, and every run of frames above half-way from the video's median
  to its peak is a moment (more levels, as in temporal actionness grouping, Zhao et al. 2017, are
  an option), scored by its mean score, which is comparable across videos. Optionally the mean
  of the frames around it is subtracted (`context_weight`, AutoLoc's outer-inner contrast, Shou
  et al. 2018); on held-out procedural videos both options did worse (bench/README.md).
  Overlapping runs of one video go through NMS.
- Ranking: the proposals of every candidate video, merged by score.

Moment-retrieval metrics are in `retrieval.py`; `bench/video_search.py` measures the index (build
time, memory, queries/s up to 10,000 videos x 1,000 frames) and the retrieval quality.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from casebook.common.errors import DataError
from casebook.common.tables import markdown_table
from datamodules.cache import default_cache_dir
from datamodules.hparams import load_checkpoint
from datamodules.video.annotations import (
    feature_shape,
    read_annotation_json,
    sentence_key,
    training_sentences,
)
from datamodules.video.procedural import all_step_texts
from datamodules.video.tokenizer import cached_wordpiece, load_pretrained_tokenizer
from lightning_modules.video.encoders import ClipEncoders
from lightning_modules.video.heads import AttendAlignHead
from lightning_modules.video.retrieval import Moment, moment_retrieval_metrics

INDEX_DIR = ".search_index"
INDEX_VERSION = 2
QUERY_CHUNK = 16  # queries scored against all windows at once
# Index windows of 16 frames every 8 (half-overlapping): any moment of up to 8 frames lies wholly
# inside one window; a longer stride means fewer windows, faster queries (bench/README.md).
WINDOW, STRIDE = 16, 8
CANDIDATE_VIDEOS = 16  # videos whose frames are read and scored per query
PREDICT_COMMAND = (
    "casebook predict --config configs/clip_pretrainer.yaml --config "
    "configs/presets/npy_predictions.yaml --ckpt_path best --return_predictions false"
)
FrameScorer = Callable[[np.ndarray, int], np.ndarray]  # (frames (T, D), query index) -> (T,)


@dataclass(frozen=True)
class ProposalConfig:
    """How moments are cut from a video's per-frame scores.

    Args:
        levels: thresholds, as fractions of the way from the video's median score to its peak.
        context: the frames around a run that it is contrasted with, as a fraction of its length
            on each side.
        context_weight: score = inner mean - context_weight * context mean (0: inner mean only).
        nms_iou: of two runs of one video overlapping this much, the lower-scored one is dropped.
        min_frames: shortest moment, in frames.
        smoothing: frames of the moving average of the scores the runs are found on, so that a
            lone noisy frame is no moment (1: none).
    """

    levels: tuple[float, ...] = (0.5,)
    context: float = 0.25
    context_weight: float = 0.0
    nms_iou: float = 0.5
    min_frames: int = 1
    smoothing: int = 3


def runs_above(scores: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """[start, end) of every maximal run of frames with score >= threshold."""
    above = np.concatenate([[False], scores >= threshold, [False]])
    edges = np.flatnonzero(above[1:] != above[:-1])
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def moving_average(scores: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over `width` frames, over the frames there are at the ends."""
    if width <= 1 or len(scores) < 2:
        return scores
    kernel = np.ones(width)
    return np.convolve(scores, kernel, "same") / np.convolve(np.ones(len(scores)), kernel, "same")


def frame_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """IoU of two [start, end) frame ranges."""
    overlap = min(a[1], b[1]) - max(a[0], b[0])
    return max(overlap, 0) / (max(a[1], b[1]) - min(a[0], b[0]))


def propose_moments(
    scores: np.ndarray, config: ProposalConfig = ProposalConfig(), limit: int | None = None
) -> list[tuple[int, int, float]]:
    """(T,) per-frame scores of one video -> [(start, end exclusive, score)], best first, at
    most `limit` of them."""
    # Smoothed scores, so a lone noisy frame makes no moment; the context starts `reach` frames
    # from a run, past what smoothing spread of its edges, or a run a frame too wide would win.
    scores = moving_average(np.asarray(scores, dtype=np.float64), config.smoothing)
    reach, length = config.smoothing // 2, len(scores)
    low, high = float(np.median(scores)), float(scores.max())
    runs = {
        run
        for level in config.levels
        for run in runs_above(scores, low + level * (high - low))
        if run[1] - run[0] >= config.min_frames
    }
    if not runs:
        return []
    start, end = np.array(sorted(runs)).T
    # Every run's inner and context means at once, from prefix sums.
    sums = np.concatenate([[0.0], scores.cumsum()])
    margin = np.maximum(1, np.round(config.context * (end - start))).astype(np.int64)
    before = np.clip([start - reach - margin, start - reach], 0, length)
    after = np.clip([end + reach, end + reach + margin], 0, length)
    around_sum = sums[before[1]] - sums[before[0]] + sums[after[1]] - sums[after[0]]
    around = before[1] - before[0] + after[1] - after[0]
    outer = np.where(around > 0, around_sum / np.maximum(around, 1), low)  # low: a whole video
    inner = (sums[end] - sums[start]) / (end - start)
    score = inner - config.context_weight * outer
    kept: list[tuple[int, int, float]] = []
    for i in np.lexsort((end, start, -score)):
        proposal = (int(start[i]), int(end[i]), float(score[i]))
        if all(frame_iou(proposal[:2], k[:2]) < config.nms_iou for k in kept):
            kept.append(proposal)
            if limit is not None and len(kept) >= limit:
                break
    return kept


def window_starts(num_frames: int, window: int, stride: int) -> np.ndarray:
    """Starts of the windows over a video: every `stride` frames, the last one ending at its end."""
    if num_frames <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, num_frames - window + 1, stride)
    if starts[-1] + window < num_frames:
        starts = np.append(starts, num_frames - window)
    return starts


def normalized(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, D) frame embeddings -> (L2-normalized (T, D) float32, norms (T,) float32)."""
    frames = np.asarray(frames, dtype=np.float32)
    norms = np.linalg.norm(frames, axis=1)
    return frames / np.maximum(norms, 1e-12)[:, None], norms


def source_files(features_dir: Path) -> list[Path]:
    """The `<video_id>.npy` files of a folder (hidden files, e.g. half-written ones, skipped)."""
    if not features_dir.is_dir():
        raise DataError(
            f"{features_dir}: no such folder of frame embeddings; write them with `{PREDICT_COMMAND}`"
        )
    files = sorted(p for p in features_dir.glob("*.npy") if not p.name.startswith("."))
    if not files:
        raise DataError(
            f"{features_dir}: no <video_id>.npy frame embeddings, nothing to search; write them "
            f"with `{PREDICT_COMMAND}` (--trainer.callbacks.output_dir {features_dir})"
        )
    return files


def saved_manifest(index_dir: Path) -> dict | None:
    """The index's manifest.json, or None when there is none or it is unreadable (a build that
    was interrupted, another version's): either way the index is built again."""
    try:
        manifest = json.loads((index_dir / "manifest.json").read_text())
    except (OSError, ValueError):  # missing, or not JSON (JSONDecodeError is a ValueError)
        return None
    return manifest if isinstance(manifest, dict) else None


class MomentIndex:
    """Frame embeddings of many videos, searchable by a query embedding (see the module docstring).

    Files of `directory`: `manifest.json` (ids, lengths, sizes and dates of the source files),
    `frames.f16` (N, D) L2-normalized frames and `norms.f32` (N,) their norms, both memory-mapped;
    `windows.f32` (W, D) window means and `window_video.i64` (W,) their video, both read into
    memory. `offsets` (V + 1,): where each video's frames start."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.manifest = json.loads((self.directory / "manifest.json").read_text())
        self.video_ids: list[str] = [video_id for video_id, _ in self.manifest["videos"]]
        lengths = np.array([length for _, length in self.manifest["videos"]], dtype=np.int64)
        self.offsets = np.concatenate([[0], lengths.cumsum()])
        self.dim = int(self.manifest["dim"])
        self.window = int(self.manifest["window"])
        self.frames = np.memmap(
            self.directory / "frames.f16",
            dtype=np.float16,
            mode="r",
            shape=(int(self.offsets[-1]), self.dim),
        )
        windows = np.fromfile(self.directory / "windows.f32", dtype=np.float32)
        self.windows = torch.from_numpy(windows.reshape(-1, self.dim))
        self.window_video = torch.from_numpy(
            np.fromfile(self.directory / "window_video.i64", dtype=np.int64)
        )
        self.norms = np.memmap(
            self.directory / "norms.f32", dtype=np.float32, mode="r", shape=(int(self.offsets[-1]),)
        )
        self.position = {video_id: i for i, video_id in enumerate(self.video_ids)}

    @staticmethod
    def write(
        videos: Iterable[tuple[str, np.ndarray]],
        directory: str | Path,
        window: int = WINDOW,
        stride: int = STRIDE,
        sources: dict | None = None,
    ) -> MomentIndex:
        """Index `(video_id, (T, D) frame embeddings)` pairs, streamed, into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "manifest.json").unlink(missing_ok=True)  # invalid until written again
        listed, dim = [], None
        # Everything streams to raw files, so building holds one video at a time in memory.
        with (
            open(directory / "frames.f16", "wb") as out,
            open(directory / "norms.f32", "wb") as lengths,
            open(directory / "windows.f32", "wb") as embeddings,
            open(directory / "window_video.i64", "wb") as owners,
        ):
            for video_id, frames in videos:
                frames, norms = normalized(frames)
                dim = dim or frames.shape[1]
                out.write(frames.astype(np.float16).tobytes())
                lengths.write(norms.tobytes())
                # Means by prefix sums: a window's mean is (sum up to its end - sum up to its start) / n.
                sums = np.concatenate([np.zeros((1, dim), np.float64), frames.cumsum(0)])
                starts = window_starts(len(frames), window, stride)
                ends = np.minimum(starts + window, len(frames))
                means = (sums[ends] - sums[starts]) / (ends - starts)[:, None]
                embeddings.write(means.astype(np.float32).tobytes())
                owners.write(np.full(len(starts), len(listed), dtype=np.int64).tobytes())
                listed.append((video_id, len(frames)))
        manifest = {
            "version": INDEX_VERSION,
            "dim": dim,
            "window": window,
            "stride": stride,
            "videos": listed,
            "sources": sources or {},
        }
        (directory / "manifest.json").write_text(json.dumps(manifest) + "\n")
        return MomentIndex(directory)

    @classmethod
    def of_folder(
        cls,
        features_dir: str | Path,
        index_dir: str | Path | None = None,
        window: int = WINDOW,
        stride: int = STRIDE,
        log: Callable[[str], None] = lambda message: None,
        dim: int | None = None,
        videos: Sequence[str] | None = None,
    ) -> MomentIndex:
        """The index of a folder of `<video_id>.npy` files, read from `index_dir` (default
        `<folder>/.search_index`) when it is up to date, else (re)built there; every file is
        checked to be (T > 0, D) with the same D (`dim` when given), and each of `videos` to
        have a file, before anything is built."""
        features_dir = Path(features_dir)
        files = source_files(features_dir)
        names = {p.stem for p in files}
        for video_id in videos or ():
            if video_id not in names:
                raise DataError(
                    f"video {video_id}: no features in {features_dir} (no {video_id}.npy);"
                    f" encode it with `{PREDICT_COMMAND}`"
                )
        index_dir = Path(index_dir) if index_dir else features_dir / INDEX_DIR
        sources = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
        wanted = {"version": INDEX_VERSION, "window": window, "stride": stride, "sources": sources}
        saved = saved_manifest(index_dir)
        if saved is not None and all(saved.get(k) == v for k, v in wanted.items()):
            return cls(index_dir)
        shapes = {p: feature_shape(p, p.stem) for p in files}
        first = shapes[files[0]][1]
        for path, (_, width) in shapes.items():
            if width != first:
                raise DataError(
                    f"video {path.stem}: {path} has {width}-d embeddings, {files[0].name} has"
                    f" {first}-d; every file of {features_dir} must come from the same encoders"
                )
        if dim is not None and first != dim:
            raise DataError(
                f"{features_dir}: the frame embeddings are {first}-d but the query is {dim}-d;"
                " search with the encoders that wrote them"
            )
        log(f"indexing {len(files)} videos of {features_dir} into {index_dir}")
        videos = ((p.stem, np.load(p)) for p in files)
        try:
            return cls.write(videos, index_dir, window, stride, sources)
        except OSError as error:  # e.g. a read-only folder of features
            raise DataError(
                f"{index_dir}: cannot write the search index ({error.strerror or error});"
                " give a writable folder with --index"
            ) from None

    def __len__(self) -> int:
        return len(self.video_ids)

    def video_frames(self, video: int, raw: bool = False) -> np.ndarray:
        """(T, D) float32 frame embeddings of the `video`-th video: normalized, or as cached."""
        span = slice(self.offsets[video], self.offsets[video + 1])
        frames = np.asarray(self.frames[span], np.float32)
        return frames * self.norms[span][:, None] if raw else frames

    def candidate_videos(self, queries: Tensor, count: int, among: Tensor | None = None) -> Tensor:
        """(Q, D) normalized queries -> (Q, <= count) videos whose best window is most similar
        (best first; -1 pads); `among`: a boolean mask of the videos to consider."""
        if len(queries) > QUERY_CHUNK:  # bounds the (queries, windows) scores in memory
            parts = [self.candidate_videos(q, count, among) for q in queries.split(QUERY_CHUNK)]
            return torch.cat(parts)
        scores = queries.float() @ self.windows.T  # (Q, W) mean cosines
        if among is not None:
            scores[:, ~among[self.window_video]] = float("-inf")
        per_video = torch.full((len(queries), len(self)), float("-inf"))
        per_video.scatter_reduce_(
            1, self.window_video.expand(len(queries), -1), scores, "amax", include_self=True
        )
        best = per_video.topk(min(count, len(self)), dim=1)
        return best.indices.masked_fill(torch.isinf(best.values), -1)

    def search(
        self,
        queries: Tensor,
        top_k: int = 5,
        fps: float = 1.0,
        candidate_videos: int = CANDIDATE_VIDEOS,
        proposals: ProposalConfig = ProposalConfig(),
        frame_scorer: FrameScorer | None = None,
        videos: Sequence[str] | None = None,
    ) -> list[list[Moment]]:
        """(Q, D) query embeddings -> per query its `top_k` moments, best first.

        Frames are scored by cosine to the query, or by `frame_scorer(frames, query index)`;
        `videos` restricts the search to these ids."""
        if queries.shape[-1] != self.dim:
            raise DataError(
                f"{self.directory.parent}: the frame embeddings are {self.dim}-d but the query"
                f" is {queries.shape[-1]}-d; search with the encoders that wrote them"
            )
        among = None
        if videos is not None:
            missing = [v for v in videos if v not in self.position]
            if missing:
                raise DataError(
                    f"video {missing[0]}: no features in the index of {self.directory.parent}"
                    f" (no {missing[0]}.npy); encode it with `{PREDICT_COMMAND}`"
                )
            among = torch.zeros(len(self), dtype=torch.bool)
            among[[self.position[v] for v in videos]] = True
        # on the CPU beside the index, and out of any autograd graph (queries straight from an
        # encoder on a GPU, or run outside no_grad)
        queries = F.normalize(queries.detach().float().cpu(), dim=-1)
        candidates = self.candidate_videos(queries, max(candidate_videos, top_k), among)
        results = []
        for q, query in enumerate(queries.numpy()):
            found = []
            for video in candidates[q][candidates[q] >= 0].tolist():
                if frame_scorer is None:
                    scores = self.video_frames(video) @ query
                else:
                    scores = frame_scorer(self.video_frames(video, raw=True), q)
                for start, end, score in propose_moments(scores, proposals, top_k):
                    found.append(Moment(self.video_ids[video], start / fps, end / fps, score))
            found.sort(key=lambda m: -m.score)
            results.append(found[:top_k])
        return results


class QueryEncoder:
    """Texts -> (Q, embed_dim) embeddings with a ClipPretrainer's text encoder and tokenizer."""

    def __init__(self, encoders: ClipEncoders, tokenizer, max_text_length: int = 32) -> None:
        self.encoders = encoders.eval()
        self.tokenizer, self.max_text_length = tokenizer, max_text_length
        self.dim = encoders.embed_dim

    @classmethod
    def load(
        cls,
        encoders: str | Path,
        tokenizer: str | None = None,
        annotations: str | None = None,
        cache_dir: str | Path | None = None,
    ) -> QueryEncoder:
        """The encoders (folder or .ckpt) and the tokenizer they were trained with: a local folder
        (`tokenizer`), or the WordPiece of `annotations`' training sentences, or (neither) of
        the procedural generator's texts, as InstructionalVideoDataModule builds it."""
        model = ClipEncoders.load(encoders)
        knows = model.spec["text_config"]["vocab_size"]
        if tokenizer is not None:
            text_tokenizer = load_pretrained_tokenizer(tokenizer)
        else:
            corpus = (
                training_sentences(read_annotation_json(annotations))
                if annotations
                else all_step_texts()
            )
            if not corpus:
                raise DataError(f"{annotations}: no training sentences to build a tokenizer from")
            cache = Path(cache_dir) if cache_dir else default_cache_dir()
            text_tokenizer = cached_wordpiece(corpus, cache)
        if len(text_tokenizer) > knows or (tokenizer is None and len(text_tokenizer) != knows):
            source = tokenizer or annotations or "the procedural texts"
            raise DataError(
                f"{encoders}: the text encoder knows {knows} tokens, the tokenizer of {source} has"
                f" {len(text_tokenizer)}; pass the --annotations or --tokenizer it was trained with"
            )
        return cls(model, text_tokenizer)

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> Tensor:
        """(Q, embed_dim) projected text embeddings, not normalized."""
        tokens = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_text_length,
            return_tensors="pt",
        )
        return self.encoders.encode_texts(tokens["input_ids"], tokens["attention_mask"]).float()


class AlignerFrameScorer:
    """Per-frame scores from a trained StepAligner (attend_align): the probability that a frame
    shows the query, the query being the video's one step (softmax over (background, query) of
    its logits), times the frame's cosine to the query (`times_similarity`).

    Why the product: the aligner learned to split a video among the steps it is given, so with
    one step it marks nearly every step-like frame as that step; it says where steps begin and
    end, the similarity says which step it is (actionness x class score, as in SSN)."""

    def __init__(
        self, checkpoint: str | Path, query_embeddings: Tensor, times_similarity: bool = True
    ) -> None:
        state = load_checkpoint(checkpoint, "--aligner")
        hp = state.get("hyper_parameters", {})
        if hp.get("head") != "attend_align":
            raise DataError(
                f"--aligner {checkpoint}: a StepAligner with head attend_align gives per-frame"
                f" scores; this checkpoint's head is {hp.get('head')!r}"
            )
        if not hp.get("freeze_encoders", False):
            raise DataError(
                f"--aligner {checkpoint}: its encoders were fine-tuned, so its frames are no longer"
                " embedded like the cached ones; use an aligner trained with frozen encoders"
            )
        weights = {
            k[len("head.") :]: v for k, v in state["state_dict"].items() if k.startswith("head.")
        }
        embed_dim = weights["frame_in.weight"].shape[1]
        if embed_dim != query_embeddings.shape[-1]:
            raise DataError(
                f"--aligner {checkpoint}: its head takes {embed_dim}-d embeddings, the encoders"
                f" give {query_embeddings.shape[-1]}-d; use the aligner of these encoders"
            )
        self.head = AttendAlignHead(
            embed_dim,
            hp.get("hidden", 128),
            hp.get("layers", 2),
            hp.get("heads", 4),
            positional_encoding=hp.get("positional_encoding", "sinusoidal"),
            max_frames=hp.get("max_frames", 1024),
        )
        self.head.load_state_dict(weights)
        self.head.eval()
        self.queries = query_embeddings.detach().float().cpu()  # beside the head, on the CPU
        self.times_similarity = times_similarity

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, query: int) -> np.ndarray:
        """(T, D) frame embeddings as cached (not normalized: as the head saw them) -> (T,)."""
        video = torch.from_numpy(frames)[None]
        mask = torch.ones(video.shape[:2], dtype=torch.bool)
        query_embedding = self.queries[query]
        logits = self.head(video, query_embedding[None, None], mask, mask.new_ones((1, 1)))
        probability = logits[0].log_softmax(-1)[:, 1].exp()
        if self.times_similarity:
            probability = probability * F.cosine_similarity(video[0], query_embedding[None], -1)
        return probability.numpy()


def print_moments(query: str, moments: list[Moment], file=None) -> None:
    file = file or sys.stdout
    width = max([len("video"), *(len(m.video_id) for m in moments)])
    print(f"query: {query}", file=file)
    print(f"{'rank':>4}  {'video':<{width}}  {'start s':>8}  {'end s':>8}  {'score':>7}", file=file)
    for rank, m in enumerate(moments, 1):
        print(
            f"{rank:>4}  {m.video_id:<{width}}  {m.start:>8.1f}  {m.end:>8.1f}  {m.score:>7.3f}",
            file=file,
        )
    if not moments:
        print("      (no moment found)", file=file)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="casebook search",
        description="The top-k moments of a folder of cached frame embeddings for text queries.",
    )
    p.add_argument("features", help="folder of <video_id>.npy frame embeddings (casebook predict)")
    p.add_argument("queries", nargs="*", help="one or more text queries")
    p.add_argument("--top_k", type=int, default=5, help="moments returned per query")
    p.add_argument(
        "--encoders",
        default="runs/clip_pretrainer/encoders",
        help="the ClipPretrainer encoders (folder or .ckpt) that wrote the embeddings",
    )
    p.add_argument("--tokenizer", help="local tokenizer folder the encoders were trained with")
    p.add_argument(
        "--annotations", help="annotation JSON whose training sentences built the tokenizer"
    )
    p.add_argument(
        "--evaluate",
        metavar="ANNOTATIONS",
        help="instead of queries: moment retrieval on this annotation JSON's --subset"
        " (R1@0.5/0.7, R5@0.5, mAP@0.5/0.75, and a random row)",
    )
    p.add_argument("--subset", default="testing", help="the held-out subset --evaluate scores")
    p.add_argument("--cache_dir", help="where the WordPiece tokenizer is cached")
    p.add_argument(
        "--aligner", help="StepAligner checkpoint (attend_align): score frames with its head"
    )
    p.add_argument("--fps", type=float, default=1.0, help="embeddings per second (--data.fps)")
    p.add_argument("--videos", nargs="+", help="search only these video ids")
    p.add_argument("--out", default="runs/search/moments.json", help="JSON file of the moments")
    p.add_argument("--index", help="index folder (default <features>/.search_index)")
    p.add_argument("--window", type=int, default=WINDOW, help="frames per index window")
    p.add_argument("--stride", type=int, default=STRIDE, help="frames between index windows")
    p.add_argument(
        "--candidate_videos",
        type=int,
        default=CANDIDATE_VIDEOS,
        help="videos whose frames are scored",
    )
    p.add_argument(
        "--context_weight",
        type=float,
        default=ProposalConfig.context_weight,
        help="score = inner mean - this x the mean around",
    )
    return p


def annotated_queries(
    annotations: str | Path, subset: str = "testing"
) -> tuple[dict[str, str], dict[str, list[Moment]]]:
    """Held-out annotations as moment-retrieval queries: one query per distinct sentence of the
    `subset`'s videos (equal up to case and spacing), its true moments every segment annotated
    with it there. Returns ({key: sentence}, {key: [Moment in seconds]})."""
    source = Path(annotations)
    database = read_annotation_json(source)
    texts: dict[str, str] = {}
    truth: dict[str, list[Moment]] = {}
    for video_id, entry in sorted(database.items()):
        if not isinstance(entry, dict) or entry.get("subset") != subset:
            continue
        for k, annotation in enumerate(entry.get("annotations") or []):
            where = f"{source.name}: video {video_id}: annotation {k}"
            segment = annotation.get("segment") if isinstance(annotation, dict) else None
            sentence = annotation.get("sentence") if isinstance(annotation, dict) else None
            if (
                not isinstance(segment, list | tuple)
                or len(segment) != 2
                or not all(isinstance(x, int | float) for x in segment)
                or not 0 <= segment[0] < segment[1]
            ):
                raise DataError(f"{where}: segment {segment!r} is not [start_s, end_s]")
            if not isinstance(sentence, str) or not sentence.strip():
                raise DataError(f"{where}: empty sentence")
            key = sentence_key(sentence)
            texts.setdefault(key, sentence.strip())
            truth.setdefault(key, []).append(Moment(video_id, float(segment[0]), float(segment[1])))
    if not truth:
        raise DataError(f"{source}: no annotated video in the {subset!r} subset to evaluate on")
    return texts, truth


def random_moments(
    index: MomentIndex,
    truth: dict[str, list[Moment]],
    fps: float = 1.0,
    among: Sequence[str] | None = None,
    count: int = 10,
    seed: int = 0,
) -> dict[str, list[Moment]]:
    """The chance row: per query `count` moments, each in a random video (of `among`), as long as
    a random true moment (cut to the video), at a random place."""
    rng = np.random.default_rng(seed)
    lengths = [m.end - m.start for moments in truth.values() for m in moments]
    videos = [index.position[v] for v in among] if among else list(range(len(index)))
    ranked = {}
    for query in truth:
        moments = []
        for rank in range(count):
            video = videos[int(rng.integers(len(videos)))]
            duration = (index.offsets[video + 1] - index.offsets[video]) / fps
            length = min(lengths[int(rng.integers(len(lengths)))], duration)
            start = float(rng.uniform(0, duration - length))
            moments.append(Moment(index.video_ids[video], start, start + length, -float(rank)))
        ranked[query] = moments
    return ranked


def argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line's values, in one line, or None."""
    for name in ("top_k", "window", "stride", "candidate_videos"):
        if getattr(args, name) < 1:
            return f"--{name} must be at least 1"
    if args.fps <= 0:
        return "--fps must be positive"
    if bool(args.queries) == bool(args.evaluate):
        return "give text queries or --evaluate ANNOTATIONS"
    return None


def write_json(path: Path, payload: dict | list) -> None:
    """`payload` as JSON at `path`, whole or not at all (written beside it, then renamed)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(temporary, path)
    except OSError as error:
        raise DataError(
            f"--out {path}: cannot write the moments ({error.strerror or error}); give a writable path"
        ) from None


def run_search(args: argparse.Namespace) -> None:
    """The command, once its arguments are valid: prerequisites (encoders, aligner, index) are
    read before the search, results printed and written to `--out`. Bad input: DataError."""
    started = time.perf_counter()
    log = lambda message: print(message, file=sys.stderr)  # noqa: E731
    queries, truth, videos = args.queries, None, args.videos
    if args.evaluate:
        texts, truth = annotated_queries(args.evaluate, args.subset)
        queries = list(texts.values())
        videos = sorted({m.video_id for moments in truth.values() for m in moments})
    # Prerequisites first, so bad input stops before a long indexing.
    encoder = QueryEncoder.load(args.encoders, args.tokenizer, args.annotations, args.cache_dir)
    embeddings = encoder(queries)
    scorer = AlignerFrameScorer(args.aligner, embeddings) if args.aligner else None
    index = MomentIndex.of_folder(
        args.features, args.index, args.window, args.stride, log, encoder.dim, videos
    )
    proposals = ProposalConfig(context_weight=args.context_weight)
    results = index.search(
        embeddings, args.top_k, args.fps, args.candidate_videos, proposals, scorer, videos
    )
    payload: dict | list = [
        {"query": query, "moments": [asdict(m) for m in moments]}
        for query, moments in zip(queries, results)
    ]
    if truth is None:
        for query, moments in zip(queries, results):
            print_moments(query, moments)
            print()
    else:
        rows = {
            "search": moment_retrieval_metrics(dict(zip(texts, results)), truth),
            "random": moment_retrieval_metrics(
                random_moments(index, truth, args.fps, videos), truth
            ),
        }
        print(
            f"moment retrieval, {args.evaluate} {args.subset!r}: {len(truth)} queries,"
            f" {sum(map(len, truth.values()))} true moments in {len(videos)} videos\n"
        )
        print(markdown_table([{"": name, **metrics} for name, metrics in rows.items()]))
        payload = {"metrics": rows, "queries": payload}
    write_json(Path(args.out), payload)
    print(
        f"{len(videos or index.video_ids)} videos searched in"
        f" {time.perf_counter() - started:.1f} s; written to {args.out}",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    """`casebook search FEATURES QUERY ...` or `casebook search FEATURES --evaluate A.json`:
    exit 0, or 2 with one line on bad input."""
    args = parser().parse_args(argv)
    try:
        if problem := argument_problem(args):
            raise DataError(problem)
        run_search(args)
    except DataError as error:
        print(f"casebook: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
