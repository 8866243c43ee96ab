"""The shipped step-aligner config on generated YouCook2-format feature sets, as a new user runs it.

    .venv/bin/python -m bench.video_features                     # 3 seeds x 2 noise levels, <= 6 min each
    .venv/bin/python -m bench.video_features --quick             # one set
    .venv/bin/python -m bench.video_features --seeds 0 --noises 1.0 -- --trainer.max_epochs=40

Each set is written by `datamodules.video.feature_sets` (300 videos: 210 train, 45 validation,
45 test; look-alike runs in half the background stretches) and each run is exactly what a user
types, in this process (CasebookCLI, the same code as `casebook`):

    casebook fit  --config configs/step_aligner.yaml --model.pretrained null \
        --data.source features --data.annotations A.json --data.features_dir F
    casebook test ... --ckpt_path best

plus the CSV logger and a run folder of its own (and whatever follows `--`). The table reports
test R@0.5 and mIoU of the best-validation checkpoint, the random ordered segmentation's R@0.5,
the best val/miou, the epochs run, whether early stopping ended the fit, and the fit's wall time.
The target (issue 14, item 3): R@0.5 >= 0.90 within 6 minutes on 2 CPU cores. The fit's budget
is the config's `max_time`, so on a shared machine a run gets less CPU than on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench.common import casebook_cli, cpu_line, load_average, machine, write_results
from casebook.common.tables import markdown_table
from datamodules.video.feature_sets import FeatureSetSpec, write_feature_set

ROOT = Path("runs/bench/video_features")


def feature_set(seed: int, noise: float, videos: int) -> tuple[Path, Path]:
    """The generated set for (seed, noise), written once under ROOT/sets."""
    folder = ROOT / "sets" / f"videos{videos}-noise{noise:g}-seed{seed}"
    annotations = folder / "annotations.json"
    if annotations.is_file():
        return annotations, folder / "features"
    return write_feature_set(folder, FeatureSetSpec(videos=videos, noise=noise), seed)


def run_set(seed: int, noise: float, videos: int, extra: list[str], tag: str = "") -> dict:
    """fit + test of the shipped config on one generated set; test metrics, epochs and time."""
    from lightning.pytorch.callbacks import EarlyStopping

    annotations, features_dir = feature_set(seed, noise, videos)
    root = ROOT / f"{tag}videos{videos}-noise{noise:g}-seed{seed}"
    common = [
        "--config", "configs/step_aligner.yaml", "--config", "configs/presets/csv.yaml",
        "--model.pretrained=null", "--data.source=features",
        f"--data.annotations={annotations}", f"--data.features_dir={features_dir}",
        f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false", *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    fit = casebook_cli(["fit", *common])
    fit_seconds = time.perf_counter() - started
    trainer = fit.trainer
    stopper = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    best = trainer.checkpoint_callback.best_model_score
    casebook_cli(["test", *common, "--ckpt_path=best"])
    metrics = json.loads((root / "test_metrics.json").read_text())
    return {
        "seed": seed,
        "noise": noise,
        "fit_seconds": fit_seconds,
        "epochs": trainer.current_epoch,
        "early_stopped": bool(stopper is not None and stopper.stopped_epoch > 0),
        "best_val_miou": float(best) if best is not None else float("nan"),
        "load_after": load_average()[0],
        **metrics,
    }


def row(result: dict) -> dict:
    return {
        "seed": result["seed"],
        "noise": result["noise"],
        "R@0.5": result["test/recall_iou0.5"],
        "mIoU": result["test/miou"],
        "random R@0.5": result["test/random_recall_iou0.5"],
        "best val mIoU": result["best_val_miou"],
        "epochs": result["epochs"],
        "stopped early": "yes" if result["early_stopped"] else "no (clock or cap)",
        "fit s": result["fit_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--noises", nargs="+", type=float, default=[1.0, 1.5])
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="one set: seed 0, noise 1.0")
    parser.add_argument("--tag", default="", help="prefix of the run folders and results name")
    parser.add_argument("extra", nargs="*", help="more casebook options, after --")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.noises = [0], [1.0]
    info = machine()
    print(f"{info['date']}, {cpu_line()}, load {info['load_average']}", flush=True)
    results = []
    for noise in args.noises:
        for seed in args.seeds:
            results.append(run_set(seed, noise, args.videos, args.extra, args.tag))
            print(row(results[-1]), flush=True)
    rows = [row(r) for r in results]
    rows.append(
        {
            "seed": "mean",
            "noise": "",
            **{
                key: statistics.mean(r[key] for r in rows)
                for key in ("R@0.5", "mIoU", "random R@0.5", "best val mIoU", "epochs", "fit s")
            },
            "stopped early": f"{sum(r['early_stopped'] for r in results)}/{len(results)}",
        }
    )
    print(
        f"\nShipped config (configs/step_aligner.yaml, --model.pretrained null) on generated "
        f"feature sets of {args.videos} videos; {cpu_line()}, load {load_average()}"
    )
    print(markdown_table(rows, list(rows[0])))
    name = f"video_features{'_' + args.tag.strip('-_') if args.tag else ''}"
    path = write_results(name, {"machine": info, "rows": rows, "runs": results, "args": vars(args)})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
