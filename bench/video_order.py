"""Strict vs order-tolerant step decoding on ordered and on reordered procedural test videos.

    .venv/bin/python -m bench.video_order            # about 3 minutes
    .venv/bin/python -m bench.video_order --quick    # about 1.5 minutes

One set of frozen ClipPretrainer encoders (`--pretrained DIR`, or trained here once as in
bench.video_heads), embeddings cached per video as there. Two heads: `zero_shot` (nothing trained)
and `attend_align` (trained on the ordered train split, or on `--train-set reordered|real`,
configs/step_aligner.yaml's settings).
Each is scored by `trainer.test` on three test sets drawn from the same 64 step lists
(`--data.*` options of InstructionalVideoDataModule; the step lists and texts are identical):
- ordered: the default data, every listed step once, in order;
- reordered: `reorder_prob 1, reorder shuffle`, every video out of the listed order;
- real: `skip_prob 0.2, repeat_prob 0.2, reorder_prob 0.5 (swap), lookalike_prob 0.3`.
and decoded both ways (`--model.decoding ordered | order_tolerant`, default prices).
Metrics: mIoU, CrossTask step recall, HT-Step R@1 (top frame, undecoded, so the same for both
decodings), frame accuracy.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from bench.common import load_average, machine, write_results
from bench.video_heads import (
    DEFAULT_PRETRAINED,
    CachedStepAligner,
    EmbeddedCollate,
    EmbeddedVideos,
    embed_split,
    empty_step_embedding,
    init_args,
    pretrain,
    quiet,
    trainer,
)
from casebook.common.tables import markdown_table
from datamodules.video import InstructionalVideoDataModule
from lightning_modules.video.decoding import OrderTolerance, decode_steps

TEST_SETS = {
    "ordered": {},
    "reordered": {"reorder_prob": 1.0, "reorder": "shuffle"},
    "real": {"skip_prob": 0.2, "repeat_prob": 0.2, "reorder_prob": 0.5, "lookalike_prob": 0.3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pretrained", default=str(DEFAULT_PRETRAINED))
    parser.add_argument("--epochs", type=int, default=None, help="attend_align epochs")
    parser.add_argument("--test-videos", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--train-set", choices=list(TEST_SETS), default="ordered",
        help="the train split attend_align learns from (its step lists are the same in every set)",
    )  # fmt: skip
    args = parser.parse_args()
    epochs = args.epochs or (3 if args.quick else 8)
    train_videos = 64 if args.quick else 256
    torch.set_num_threads(args.threads)
    quiet()
    began, started = time.perf_counter(), machine()
    print(f"{started['date']}, {started['cpu']}, load {started['load_average']}", flush=True)
    model_args, data_args, trainer_args = init_args("step_aligner.yaml")
    with tempfile.TemporaryDirectory(prefix="video_order_") as root:
        pretrained = args.pretrained
        if not Path(pretrained).is_dir():
            pretrained, seconds = pretrain(root, 2 if args.quick else 6, 128 if args.quick else 384)
            print(f"pretrained the encoders in {seconds:.0f} s", flush=True)
        sizes = {"num_train_videos": train_videos, "num_val_videos": 1}
        sizes["num_test_videos"] = args.test_videos
        datas = {
            name: InstructionalVideoDataModule(**{**data_args, **sizes, **options})
            for name, options in TEST_SETS.items()
        }
        ordered = datas["ordered"]
        linked = {
            "vocab_size": ordered.vocab_size,
            "pad_token_id": ordered.pad_token_id,
            "feature_dim": ordered.feature_dim,
            "frame_shape": ordered.frame_shape,
        }
        base = {**model_args, "pretrained": pretrained, "freeze_encoders": True}
        base["timeline_videos"] = base["worst_videos"] = 0
        encoder_model = CachedStepAligner(**{**base, "head": "zero_shot"}, **linked).eval()
        collate = EmbeddedCollate(empty_step_embedding(encoder_model, ordered))
        batch_size = data_args["batch_size"]

        def loader(items, shuffle=False):
            generator = torch.Generator().manual_seed(0)
            return DataLoader(
                EmbeddedVideos(items), batch_size, shuffle, collate_fn=collate, generator=generator
            )

        tests = {}
        for name, data in datas.items():
            data.setup()
            tests[name] = loader(embed_split(encoder_model, list(data.test_dataloader())))
        train_items = embed_split(encoder_model, list(datas[args.train_set].train_dataloader()))

        rows = []
        for head in ("zero_shot", "attend_align"):
            L.seed_everything(0, verbose=False)
            model = CachedStepAligner(**{**base, "head": head}, **linked)
            train_seconds = 0.0
            if head != "zero_shot":
                start = time.perf_counter()
                trainer(
                    root,
                    max_epochs=epochs,
                    limit_val_batches=0,
                    log_every_n_steps=trainer_args.get("log_every_n_steps", 50),
                ).fit(model, loader(train_items, shuffle=True))
                train_seconds = time.perf_counter() - start
            for test_set, test_loader in tests.items():
                for decoding in ("ordered", "order_tolerant"):
                    model.decode = functools.partial(
                        decode_steps, decoding=decoding, tolerance=OrderTolerance()
                    )
                    start = time.perf_counter()
                    metrics = trainer(root).test(model, test_loader, verbose=False)[0]
                    rows.append(
                        {
                            "head": head,
                            "test set": test_set,
                            "decoding": decoding,
                            "mIoU": metrics["test/miou"],
                            "step recall": metrics["test/step_recall"],
                            "R@1": metrics["test/recall_at_1"],
                            "frame acc": metrics["test/frame_acc"],
                            "test s": time.perf_counter() - start,
                            "load (1 min)": load_average()[0],
                        }
                    )
                    print(f"  {rows[-1]}", flush=True)
            print(f"  {head}: trained {train_seconds:.0f} s", flush=True)
    print(f"\n{args.test_videos} test videos per set; attend_align: {epochs} epochs on")
    print(f"{train_videos} {args.train_set} train videos; encoders {pretrained}\n")
    print(markdown_table(rows, list(rows[0])))
    finished = machine()
    print(f"\n{(time.perf_counter() - began) / 60:.1f} min, load {finished['load_average']}")
    write_results(
        ("video_order_quick" if args.quick else "video_order")
        + ("" if args.train_set == "ordered" else f"_train_{args.train_set}"),
        {"started": started, "finished": finished, "args": vars(args), "rows": rows},
    )


if __name__ == "__main__":
    main()
