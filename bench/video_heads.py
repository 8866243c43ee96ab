"""StepAligner heads on the same held-out procedural videos, and the cost of CLIP's all-gather.

    .venv/bin/python -m bench.video_heads            # about 5 minutes
    .venv/bin/python -m bench.video_heads --quick    # under 2 minutes

(1) Heads. One set of frozen ClipPretrainer encoders (`--pretrained DIR`, by default
runs/demo/clip_pretrainer/encoders when it exists; otherwise, or with `--pretrain`, a
ClipPretrainer is trained here once with configs/clip_pretrainer.yaml under an in-process
`lightning.Trainer`). Every head gets configs/step_aligner.yaml's model and data settings (only
the head and, for the baselines, the README's learning rates change), the same epoch budget and
the same test split, scored by `trainer.test`:
- the encoders are frozen, so each video's frame and step embeddings are computed once and cached;
  training and `trainer.test` read the cache (`CachedStepAligner.embed`), which is exactly what
  the frozen encoders would return (eval mode, no dropout), and skip frame rendering;
- "training time" is `trainer.fit` on the cache (no validation loop);
- "inference videos/s" is timed separately and end to end from rendered frames: encoders, head
  and decoding (`forward` + `predict_segments`) over the test videos, `torch.no_grad`, median of
  `--repeats`; rendering is excluded;
- `random` is the module's own chance row (`test/random_*`), a uniformly random ordered
  segmentation.

(2) InfoNCE with and without the cross-rank all-gather: forward + backward of
`losses.clip_loss` on random L2-normalized (N, 128) embeddings per rank. Two gloo processes on
the CPU (gathered: each rank's rows against both ranks' columns) against one process computing
the same local loss without a process group; and, as a control, the two processes computing the
local loss (gather bypassed), which shows what two processes on two busy cores cost by themselves.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, Dataset

from bench.common import load_average, machine, quiet_trainer, write_results
from casebook.common.tables import markdown_table
from datamodules.video import InstructionalVideoDataModule
from datamodules.video.datasets import IGNORE_INDEX
from lightning_modules.video import ClipPretrainer, StepAligner, losses
from lightning_modules.video.encoders import EncoderConfig

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PRETRAINED = ROOT / "runs/demo/clip_pretrainer/encoders"
HEADS = {  # head -> lr (None: the config's)
    "zero_shot": None,
    "similarity": 0.03,
    "lstm": 0.01,
    "attend_align": None,
}
CACHE_KEYS = ("frame_emb", "step_emb")


def init_args(config: str) -> tuple[dict, dict, dict]:
    """(model, data, trainer) settings of a configs/*.yaml."""
    spec = yaml.safe_load((ROOT / "configs" / config).read_text())
    return spec["model"]["init_args"], spec["data"]["init_args"], spec["trainer"]


def quiet() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LightningModule.configure_optimizers.*")
    warnings.filterwarnings("ignore", ".*no training step.*")
    warnings.filterwarnings("ignore", ".*`training_step` returned `None`.*")


def trainer(root: str, **kwargs) -> L.Trainer:
    return quiet_trainer(default_root_dir=root, **kwargs)


def pretrain(root: str, epochs: int, train_videos: int) -> tuple[str, float]:
    """ClipPretrainer with configs/clip_pretrainer.yaml; (encoders folder, seconds)."""
    model_args, data_args, _ = init_args("clip_pretrainer.yaml")
    L.seed_everything(0, verbose=False)
    data = InstructionalVideoDataModule(**{**data_args, "num_train_videos": train_videos})
    encoder = EncoderConfig(**model_args.pop("encoder"))
    export = str(Path(root) / "encoders")
    model = ClipPretrainer(
        encoder=encoder,
        vocab_size=data.vocab_size,
        pad_token_id=data.pad_token_id,
        feature_dim=data.feature_dim,
        frame_shape=data.frame_shape,
        export_dir=export,
        **model_args,
    )
    start = time.perf_counter()
    trainer(root, max_epochs=epochs, limit_val_batches=0).fit(model, data)
    return export, time.perf_counter() - start


class CachedStepAligner(StepAligner):
    """StepAligner that reads cached embeddings of frozen encoders when the batch has them."""

    def embed(self, batch: dict):
        if "frame_emb" in batch:
            return batch["frame_emb"], batch["step_emb"]
        return super().embed(batch)


class EmbeddedVideos(Dataset):
    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def _pad(tensors: list[torch.Tensor], value=0) -> torch.Tensor:
    longest = max(len(t) for t in tensors)
    out = tensors[0].new_full((len(tensors), longest, *tensors[0].shape[1:]), value)
    for i, t in enumerate(tensors):
        out[i, : len(t)] = t
    return out


class EmbeddedCollate:
    """Pads cached videos like AlignCollate: zero frame embeddings past a video's end (what
    `encode_videos` returns there), the empty text's embedding at padded steps."""

    def __init__(self, empty_step: torch.Tensor) -> None:
        self.empty_step = empty_step

    def __call__(self, items: list[dict]) -> dict:
        lengths = torch.tensor([len(item["frame_emb"]) for item in items])
        num_steps = torch.tensor([len(item["step_emb"]) for item in items])
        step_mask = torch.arange(int(num_steps.max()))[None] < num_steps[:, None]
        steps = self.empty_step.expand(*step_mask.shape, -1).clone()
        steps[step_mask] = torch.cat([item["step_emb"] for item in items])
        return {
            "frame_emb": _pad([item["frame_emb"] for item in items]),
            "step_emb": steps,
            "frame_mask": torch.arange(int(lengths.max()))[None] < lengths[:, None],
            "frame_labels": _pad([item["frame_labels"] for item in items], IGNORE_INDEX),
            "segments": _pad([item["segments"] for item in items]),
            "step_mask": step_mask,
            "step_texts": [item["step_texts"] for item in items],
            "video_ids": [item["video_id"] for item in items],
        }


@torch.no_grad()
def embed_split(model: StepAligner, batches: list[dict]) -> list[dict]:
    """Per video: frozen-encoder embeddings and the targets, without padding."""
    items = []
    for batch in batches:
        frames, steps = model.embed(batch)
        for b, video_id in enumerate(batch["video_ids"]):
            t, s = int(batch["frame_mask"][b].sum()), int(batch["step_mask"][b].sum())
            items.append(
                {
                    "frame_emb": frames[b, :t].clone(),
                    "step_emb": steps[b, :s].clone(),
                    "frame_labels": batch["frame_labels"][b, :t].clone(),
                    "segments": batch["segments"][b, :s].clone(),
                    "step_texts": batch["step_texts"][b],
                    "video_id": video_id,
                }
            )
    return items


@torch.no_grad()
def empty_step_embedding(model: StepAligner, data: InstructionalVideoDataModule) -> torch.Tensor:
    tokens = data.tokenizer([""], return_tensors="pt")
    return model.encoders.encode_texts(tokens["input_ids"], tokens["attention_mask"])[0]


@torch.no_grad()
def inference_seconds(model: StepAligner, batches: list[dict], repeats: int) -> float:
    """Median seconds for encoders + head + decoding over `batches` of rendered frames."""
    model.eval()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            model.predict_segments(StepAligner.forward(model, batch), batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def random_inference_seconds(batches: list[dict], repeats: int) -> float:
    from lightning_modules.video.decoding import labels_from_segments, random_segments

    times = []
    for _ in range(repeats):
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for batch in batches:
            chance = random_segments(batch["frame_mask"], batch["step_mask"], generator)
            labels_from_segments(chance, batch["frame_mask"], batch["step_mask"])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def heads_table(args, root: str) -> tuple[list[dict], dict]:
    model_args, data_args, trainer_args = init_args("step_aligner.yaml")
    pretrain_seconds = None
    if args.pretrain or not Path(args.pretrained).is_dir():
        pretrained, pretrain_seconds = pretrain(
            root, args.pretrain_epochs, args.pretrain_train_videos
        )
    else:
        pretrained = args.pretrained
    data_args = {
        **data_args,
        "num_train_videos": args.train_videos,
        "num_val_videos": 1,
        "num_test_videos": args.test_videos,
    }
    data = InstructionalVideoDataModule(**data_args)
    data.setup()
    linked = {
        "vocab_size": data.vocab_size,
        "pad_token_id": data.pad_token_id,
        "feature_dim": data.feature_dim,
        "frame_shape": data.frame_shape,
    }
    base = {**model_args, "pretrained": pretrained, "freeze_encoders": True, "timeline_videos": 0}

    start = time.perf_counter()
    train_batches = list(data.train_dataloader())
    test_batches = list(data.test_dataloader())
    render_seconds = time.perf_counter() - start
    start = time.perf_counter()
    encoder_model = CachedStepAligner(**{**base, "head": "zero_shot"}, **linked).eval()
    train_items = embed_split(encoder_model, train_batches)
    test_items = embed_split(encoder_model, test_batches)
    collate = EmbeddedCollate(empty_step_embedding(encoder_model, data))
    cache_seconds = time.perf_counter() - start
    batch_size = data_args["batch_size"]
    test_loader = DataLoader(EmbeddedVideos(test_items), batch_size=batch_size, collate_fn=collate)
    num_test = len(test_items)

    rows, raw = [], {}
    for head, lr in HEADS.items():
        L.seed_everything(0, verbose=False)
        kwargs = {**base, "head": head} | ({"lr": lr} if lr is not None else {})
        model = CachedStepAligner(**kwargs, **linked)
        train_seconds = 0.0
        if head != "zero_shot":
            train_loader = DataLoader(
                EmbeddedVideos(train_items),
                batch_size=batch_size,
                shuffle=True,
                collate_fn=collate,
                generator=torch.Generator().manual_seed(0),
            )
            fit_trainer = trainer(
                root,
                max_epochs=args.epochs,
                limit_val_batches=0,
                log_every_n_steps=trainer_args.get("log_every_n_steps", 50),
            )
            start = time.perf_counter()
            fit_trainer.fit(model, train_loader)
            train_seconds = time.perf_counter() - start
        load_before = load_average()[0]
        metrics = trainer(root).test(model, test_loader, verbose=False)[0]
        seconds = inference_seconds(model, test_batches, args.repeats)
        raw[head] = {"metrics": metrics, "inference_seconds": seconds, "lr": model.hparams.lr}
        rows.append(
            {
                "head": head if lr is None else f"{head} (lr {lr:g})",
                "mIoU": metrics["test/miou"],
                "R@0.5": metrics["test/recall_iou0.5"],
                "frame acc": metrics["test/frame_acc"],
                "training time (s)": train_seconds,
                "inference videos/s": num_test / seconds,
                "load (1 min)": f"{load_before:.1f}-{load_average()[0]:.1f}",
            }
        )
        print(f"  {rows[-1]}", flush=True)
    random_seconds = random_inference_seconds(test_batches, args.repeats)
    rows.insert(
        0,
        {
            "head": "random",
            "mIoU": metrics["test/random_miou"],
            "R@0.5": metrics["test/random_recall_iou0.5"],
            "frame acc": metrics["test/random_frame_acc"],
            "training time (s)": 0.0,
            "inference videos/s": num_test / random_seconds,
            "load (1 min)": f"{load_average()[0]:.1f}",
        },
    )
    info = {
        "pretrained": str(pretrained),
        "pretrain_seconds": pretrain_seconds,
        "render_seconds": render_seconds,
        "cache_seconds": cache_seconds,
        "train_videos": len(train_items),
        "test_videos": num_test,
        "epochs": args.epochs,
        "batch_size": batch_size,
        "heads": raw,
    }
    return rows, info


# ---------------------------------------------------------------- (2) all-gather cost


def _loss_steps(n: int, dim: int, steps: int, seed: int) -> list[float]:
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(n, dim, generator=generator)
    texts = torch.randn(n, dim, generator=generator)
    ids = torch.randint(0, 4 * n, (n,), generator=generator)
    scale = torch.tensor(14.3)
    times = []
    for _ in range(steps):
        f = frames.clone().requires_grad_()
        t = texts.clone().requires_grad_()
        start = time.perf_counter()
        loss = losses.clip_loss(F.normalize(f, dim=-1), F.normalize(t, dim=-1), ids, scale)
        loss.backward()
        times.append(time.perf_counter() - start)
    return times


def _local_gather(tensor):
    return tensor, 0


def _rank(rank: int, world: int, port: int, n: int, dim: int, steps: int, out) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    gathered, local = [], []
    original = losses.gather_with_grad
    for _ in range(5):  # alternate gathered and local blocks, so both see the same load
        dist.barrier()
        gathered += _loss_steps(n, dim, steps // 5, seed=rank)
        losses.gather_with_grad = _local_gather
        dist.barrier()
        local += _loss_steps(n, dim, steps // 5, seed=rank)
        losses.gather_with_grad = original
    out.put((rank, gathered[2:], local[2:]))
    dist.barrier()
    dist.destroy_process_group()


def gather_table(batch_sizes: list[int], steps: int, dim: int = 128) -> tuple[list[dict], dict]:
    context = mp.get_context("spawn")
    rows, raw = [], {}
    for n in batch_sizes:
        _loss_steps(n, dim, 3, seed=0)  # warm-up
        single_before = _loss_steps(n, dim, steps // 2, seed=0)
        load_before = load_average()[0]
        queue = context.Queue()
        port = 29500 + (os.getpid() % 1000) + n % 97
        procs = [
            context.Process(target=_rank, args=(r, 2, port, n, dim, steps, queue)) for r in range(2)
        ]
        for p in procs:
            p.start()
        results = sorted(queue.get() for _ in procs)
        for p in procs:
            p.join()
        single = single_before + _loss_steps(n, dim, steps // 2, seed=0)
        single_ms = statistics.median(single) * 1e3
        gathered_ms = statistics.median(t for _, g, _ in results for t in g) * 1e3
        local2_ms = statistics.median(t for _, _, loc in results for t in loc) * 1e3
        raw[n] = {"single": single, "ranks": results}
        rows.append(
            {
                "rows per rank": n,
                "1 process, no gather (ms/step)": single_ms,
                "2 gloo processes, all-gather (ms/step)": gathered_ms,
                "ratio gather / 1 process": gathered_ms / single_ms,
                "2 processes, gather bypassed (ms/step)": local2_ms,
                "ratio gather / bypassed": gathered_ms / local2_ms,
                "load (1 min)": f"{load_before:.1f}-{load_average()[0]:.1f}",
            }
        )
        print(f"  {rows[-1]}", flush=True)
    return rows, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets, under 2 minutes")
    parser.add_argument("--pretrained", default=str(DEFAULT_PRETRAINED), help="encoders folder")
    parser.add_argument("--pretrain", action="store_true", help="pretrain here even if present")
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    parser.add_argument("--pretrain-train-videos", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every head")
    parser.add_argument("--train-videos", type=int, default=None)
    parser.add_argument("--test-videos", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=None, help="inference timing repeats")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    q = args.quick
    defaults = {
        "pretrain_epochs": 2 if q else 8,
        "pretrain_train_videos": 128 if q else 512,
        "epochs": 3 if q else 10,
        "train_videos": 64 if q else 256,
        "repeats": 1 if q else 3,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    torch.set_num_threads(args.threads)
    quiet()
    began, started = time.perf_counter(), machine()
    print(f"{started['date']}, load {started['load_average']}, {vars(args)}", flush=True)

    with tempfile.TemporaryDirectory(prefix="video_heads_") as root:
        rows, info = heads_table(args, root)
    columns = list(rows[0])
    print(
        f"\n(1) StepAligner heads, {info['test_videos']} test videos, {args.epochs} epochs on "
        f"{info['train_videos']} train videos, encoders {info['pretrained']}\n"
    )
    print(markdown_table(rows, columns))
    by = {row["head"].split(" (")[0]: row for row in rows}
    gap = by["attend_align"]["R@0.5"] - by["similarity"]["R@0.5"]
    print(
        f"\nattend_align - similarity R@0.5: {gap:+.3f} (target >= +0.2: "
        f"{'met' if gap >= 0.2 else 'missed'}); zero_shot - random R@0.5: "
        f"{by['zero_shot']['R@0.5'] - by['random']['R@0.5']:+.3f}, mIoU: "
        f"{by['zero_shot']['mIoU'] - by['random']['mIoU']:+.3f}"
    )

    sizes = [128] if q else [128, 512]
    gather_rows, gather_raw = gather_table(sizes, steps=50 if q else 200)
    print("\n(2) clip_loss forward + backward, 128-d embeddings, median ms/step\n")
    print(markdown_table(gather_rows))
    finished = machine()
    minutes = (time.perf_counter() - began) / 60
    print(f"\n{finished['date']}, load {finished['load_average']}, {minutes:.1f} min")
    write_results(
        "video_heads_quick" if q else "video_heads",
        {
            "started": started,
            "finished": finished,
            "args": vars(args),
            "heads": rows,
            "heads_info": info,
            "gather": gather_rows,
            "gather_raw": gather_raw,
        },
    )


if __name__ == "__main__":
    main()
