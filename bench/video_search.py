"""`casebook search` (lightning_modules/video/search.py): how fast the index is, and how right.

    .venv/bin/python -m bench.video_search            # about 5 minutes on a busy 2-core machine
    .venv/bin/python -m bench.video_search --quick    # about a minute

(1) Scaling. Synthetic collections of V videos x 1,000 frames of 128-d embeddings (V = 100,
1,000, 3,000, 10,000), each built and searched in a fresh process so its memory is its own.
A video is noise and a slow drift around a direction of its own, with two planted moments (8 to 32
frames) of 64 concepts; a query is a concept's direction, its true moments every planted one.
Per size: index build time (the embeddings' generation excluded), the memory-mapped frames on
disk, the windows held in memory, the process's peak resident memory, queries/s one at a time
and 64 at once (the window scores of a batch are one matrix product), and R1@0.5 / R5@0.5 of
the planted moments (each concept has ~V/32 of them, so mAP over 10 answers means little here).

(2) Retrieval quality on held-out videos. The procedural test split (videos never seen in
training; each shows one of the six (action, object) pairs held out of training) is encoded by
ClipPretrainer encoders (`--encoders`, default runs/clip_pretrainer/encoders, made by
`casebook fit --config configs/clip_pretrainer.yaml`) as `casebook predict` would, and indexed.
A query per step meaning (synonyms are one meaning), worded as its first occurrence; its true
moments are every occurrence in the collection. Rows: the shipped proposals (their options were
chosen on 64 videos of the validation split, not on these), the options it leaves off (context
contrast, more levels, no smoothing), with `--aligner CKPT` the trained aligner's per-frame
probability times the similarity (and alone), and `random`: per query ten moments in random
videos, each as long as a random true moment, at a random place (the `--evaluate` chance row).
Metrics: moment_retrieval_metrics (QVHighlights' protocol, fractions).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from bench.common import cpu_line, load_average, machine, write_results
from casebook.common.tables import markdown_table
from datamodules.video.procedural import ProceduralVideoGenerator
from lightning_modules.video.encoders import ClipEncoders
from lightning_modules.video.retrieval import (
    Moment,
    mean_average_precision,
    moment_retrieval_metrics,
)
from lightning_modules.video.search import (
    AlignerFrameScorer,
    MomentIndex,
    ProposalConfig,
    QueryEncoder,
    random_moments,
)

DIM, FRAMES, CONCEPTS, QUERIES = 128, 1000, 64, 64


def concept_directions(rng: np.random.Generator) -> np.ndarray:
    """(CONCEPTS, DIM) unit vectors: what the planted moments show, and the queries."""
    concepts = rng.standard_normal((CONCEPTS, DIM)).astype(np.float32)
    return concepts / np.linalg.norm(concepts, axis=1, keepdims=True)


def synthetic_collection(
    videos: int, concepts: np.ndarray, rng: np.random.Generator, truth: dict, clock: list
) -> Iterator[tuple[str, np.ndarray]]:
    """Yields (video_id, (FRAMES, DIM)) embeddings; fills truth[concept] with planted moments;
    adds its own generation time to clock[0] (so the build time can leave it out)."""
    for v in range(videos):
        began = time.perf_counter()
        video_id = f"synthetic-{v:05d}"
        base = rng.standard_normal(DIM).astype(np.float32)
        # A slow drift: straight lines between random points 100 frames apart.
        anchors = rng.standard_normal((FRAMES // 100 + 1, DIM)).astype(np.float32)
        place = np.arange(FRAMES) / 100
        low = np.minimum(place.astype(np.int64), len(anchors) - 2)
        part = (place - low)[:, None].astype(np.float32)
        drift = anchors[low] * (1 - part) + anchors[low + 1] * part
        frames = base / np.linalg.norm(base) * 4 + drift
        frames += rng.standard_normal((FRAMES, DIM), dtype=np.float32)
        half = FRAMES // 2
        for k, lower in zip(rng.integers(CONCEPTS, size=2), (0, half)):
            length = int(rng.integers(8, 33))
            start = lower + int(rng.integers(0, half - length))
            noise = rng.standard_normal((length, DIM), dtype=np.float32)
            frames[start : start + length] = 8 * concepts[k] + noise
            truth.setdefault(int(k), []).append(Moment(video_id, start, start + length))
        clock[0] += time.perf_counter() - began
        yield video_id, frames


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def scaling_row(videos: int, threads: int, seed: int = 0) -> dict:
    """Build and search one synthetic collection (run in a process of its own)."""
    torch.set_num_threads(threads)
    imports_mb = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="casebook-search-bench-") as folder:
        truth, clock = {}, [0.0]
        rng = np.random.default_rng(seed)
        concepts = concept_directions(rng)
        began = time.perf_counter()
        index = MomentIndex.write(
            synthetic_collection(videos, concepts, rng, truth, clock), Path(folder) / "index"
        )
        build = time.perf_counter() - began - clock[0]
        queries = torch.from_numpy(concepts)[:QUERIES]
        index.search(queries[:2])  # warm-up: page in the windows
        began = time.perf_counter()
        single = [index.search(q[None], top_k=10)[0] for q in queries]
        single_qps = len(queries) / (time.perf_counter() - began)
        began = time.perf_counter()
        batched = index.search(queries, top_k=10)
        batched_qps = len(queries) / (time.perf_counter() - began)
        assert [[m.video_id for m in r] for r in batched] == [
            [m.video_id for m in r] for r in single
        ]
        ranked = {str(k): moments for k, moments in enumerate(single)}
        planted = {str(k): truth.get(k, []) for k in range(len(queries)) if truth.get(k)}
        metrics = moment_retrieval_metrics(ranked, planted)
        frames_mb = (Path(folder) / "index" / "frames.f16").stat().st_size / 2**20
        return {
            "videos": videos,
            "frames": int(index.offsets[-1]),
            "build s": build,
            "generation s": clock[0],
            "frames on disk MB": frames_mb,
            "windows in memory MB": index.windows.numel() * 4 / 2**20,
            "peak RSS MB": peak_rss_mb(),
            "of which imports MB": imports_mb,
            "queries/s, one at a time": single_qps,
            "queries/s, 64 at once": batched_qps,
            "planted R1@0.5": metrics["r1@0.5"],
            "planted R5@0.5": metrics["r5@0.5"],
        }


def scaling(sizes: list[int], threads: int) -> list[dict]:
    rows = []
    context = multiprocessing.get_context("spawn")
    for size in sizes:
        with context.Pool(1) as pool:
            row = pool.apply(scaling_row, (size, threads))
        print(f"  {size} videos: {row}", flush=True)
        rows.append(row)
    return rows


@torch.no_grad()
def encode_heldout(encoders: ClipEncoders, videos: int, folder: Path) -> tuple[dict, dict, set]:
    """The procedural test split's frame embeddings as `<video_id>.npy` (ClipPretrainer's
    predict_step: encode_frames, not normalized); (query texts, true moments, held-out queries)
    keyed by step meaning."""
    generator = ProceduralVideoGenerator()  # InstructionalVideoDataModule's default seed and sizes
    folder.mkdir(parents=True, exist_ok=True)
    texts, truth, heldout = {}, {}, set()
    encoders.eval()
    for i in range(videos):
        video = generator.make_video("test", i)
        frames = encoders.encode_frames(generator.render_frames(video))
        np.save(folder / f"{video.video_id}.npy", frames.numpy())
        for (start, end), text, meaning, held in zip(
            video.segments.tolist(), video.texts, video.text_ids, video.heldout
        ):
            key = str(meaning)
            texts.setdefault(key, text)
            truth.setdefault(key, []).append(Moment(video.video_id, start, end + 1))
            if held:
                heldout.add(key)
    return texts, truth, heldout


def retrieval(encoders_path: str, aligner: str | None, videos: int, threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    encoder = QueryEncoder.load(encoders_path)
    with tempfile.TemporaryDirectory(prefix="casebook-search-heldout-") as folder:
        began = time.perf_counter()
        texts, truth, heldout = encode_heldout(encoder.encoders, videos, Path(folder) / "features")
        print(f"  encoded {videos} held-out videos in {time.perf_counter() - began:.0f} s")
        index = MomentIndex.of_folder(Path(folder) / "features")
        keys = list(texts)
        embeddings = encoder([texts[k] for k in keys])
        configs = {
            "similarity proposals (shipped)": ProposalConfig(),
            "  + context contrast, weight 0.25": ProposalConfig(context_weight=0.25),
            "  + context contrast, weight 1": ProposalConfig(context_weight=1.0),
            "  levels 0.25, 0.5, 0.75": ProposalConfig(levels=(0.25, 0.5, 0.75)),
            "  without smoothing": ProposalConfig(smoothing=1),
        }
        # The CLI's defaults: 10 moments from the 16 best videos by their windows (what the
        # protocol's metrics read), and separately 100 moments from 100 videos, because the
        # protocol's mAP reads 10 and a query here has ~24 true moments (its AP <= 10 / 24).
        runs, deep = {}, {}
        for name, config in configs.items():
            began = time.perf_counter()
            results = index.search(embeddings, top_k=10, proposals=config)
            runs[name] = (dict(zip(keys, results)), time.perf_counter() - began)
            deep[name] = dict(zip(keys, index.search(embeddings, top_k=100, proposals=config)))
        aligner_rows = (("aligner x similarity (--aligner)", True), ("  aligner alone", False))
        for name, product in aligner_rows if aligner else ():
            scorer = AlignerFrameScorer(aligner, embeddings, times_similarity=product)
            began = time.perf_counter()
            results = index.search(embeddings, top_k=10, frame_scorer=scorer)
            runs[name] = (dict(zip(keys, results)), time.perf_counter() - began)
        runs["random"] = (random_moments(index, truth), 0.0)  # the CLI's --evaluate row
        deep["random"] = random_moments(index, truth, count=100)
        rows = []
        for name, (ranked, seconds) in runs.items():
            rows.append({"proposals": name, **moment_retrieval_metrics(ranked, truth)})
            if name in deep:
                rows[-1]["map@0.5, 100 moments"] = mean_average_precision(
                    deep[name], truth, 0.5, 100
                )
            rows[-1]["queries/s"] = len(keys) / seconds if seconds else float("nan")
        shipped = "similarity proposals (shipped)"
        held = {k: truth[k] for k in heldout}
        rows.insert(
            1,
            {
                "proposals": "  held-out steps' queries only",
                **moment_retrieval_metrics(runs[shipped][0], held),
                "map@0.5, 100 moments": mean_average_precision(deep[shipped], held, 0.5, 100),
            },
        )
        print(
            f"  {len(keys)} queries ({len(heldout)} of held-out steps), "
            f"{sum(len(m) for m in truth.values())} true moments in {len(index)} videos"
        )
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 videos; 64 held out")
    parser.add_argument("--sizes", type=int, nargs="+", help="collection sizes, in videos")
    parser.add_argument("--encoders", default="runs/clip_pretrainer/encoders")
    parser.add_argument("--aligner", help="StepAligner checkpoint (attend_align, frozen encoders)")
    parser.add_argument("--heldout-videos", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-retrieval", action="store_true")
    args = parser.parse_args()
    sizes = args.sizes or ([100, 1000] if args.quick else [100, 1000, 3000, 10000])
    heldout_videos = args.heldout_videos or (64 if args.quick else 256)
    started = machine()
    print(f"{cpu_line()}, torch threads {args.threads}, load {load_average()}")
    scaling_rows = [] if args.skip_scaling else scaling(sizes, args.threads)
    quality_rows = (
        []
        if args.skip_retrieval
        else retrieval(args.encoders, args.aligner, heldout_videos, args.threads)
    )
    if scaling_rows:
        print(f"\nIndex scaling, {FRAMES} frames x {DIM}-d per video ({cpu_line()}):\n")
        print(markdown_table(scaling_rows))
    columns = ["proposals", "r1@0.5", "r1@0.7", "r5@0.5", "map@0.5", "map@0.75", "map"]
    columns += ["map@0.5, 100 moments", "queries/s"]
    if quality_rows:
        print(f"\nMoment retrieval on {heldout_videos} held-out procedural videos:\n")
        print(markdown_table(quality_rows, columns))
    print(f"\nload average at the end: {load_average()}")
    name = "video_search" + ("_retrieval" if args.skip_scaling else "")
    name += "_scaling" if args.skip_retrieval else ""
    path = write_results(
        name,
        {
            "machine": started,
            "load_average_end": load_average(),
            "scaling": scaling_rows,
            "retrieval": quality_rows,
            "heldout_videos": heldout_videos,
        },
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
