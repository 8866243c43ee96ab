"""The video recipes as a user runs them: pre-train, then align with the exported encoders.

The four commands run through casebook's real entry point in one fresh interpreter, one after
the other as in a shell: on a busy 2-core machine each new interpreter spends ~15 s importing
torch, Lightning and transformers, which four separate processes would pay four times.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
TINY_DATA = [
    "--data.num_train_videos=4",
    "--data.num_val_videos=2",
    "--data.num_test_videos=2",
    "--data.min_steps=2",
    "--data.max_steps=3",
    "--data.min_step_frames=3",
    "--data.max_step_frames=4",
    "--data.max_gap_frames=3",
    "--data.frame_size=16",
    "--data.batch_size=4",
]
TINY_TRAINER = [
    "--config",
    str(REPO / "configs/presets/csv.yaml"),
    "--trainer.max_steps=2",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]
TINY_ENCODER = [
    "--model.encoder.cnn_width=4",
    "--model.encoder.text_hidden=16",
    "--model.encoder.text_layers=1",
    "--model.encoder.text_heads=2",
    "--model.encoder.embed_dim=16",
]


DRIVER = """
import json, sys
from casebook.cli import main
for args in json.loads(sys.argv[1]):
    main(args)
    print("finished:", *args[:1], flush=True)
"""


def run_casebook(*commands: list[str], env, cwd) -> None:
    """`casebook <command>` for each command, in order, in one subprocess."""
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(commands)],
        env={**env, "OMP_NUM_THREADS": "1"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("finished:") == len(commands)


def test_pretrain_then_align_writes_encoders_metrics_and_a_timeline(cli_env, tmp_path):
    clip_root, aligner_root = tmp_path / "clip", tmp_path / "aligner"
    clip = ["--config", str(REPO / "configs/clip_pretrainer.yaml"), *TINY_TRAINER, *TINY_DATA]
    clip += [f"--trainer.default_root_dir={clip_root}", *TINY_ENCODER]
    aligner = ["--config", str(REPO / "configs/step_aligner.yaml"), *TINY_TRAINER, *TINY_DATA]
    aligner += [
        f"--trainer.default_root_dir={aligner_root}",
        f"--model.pretrained={clip_root / 'encoders'}",
        "--model.hidden=16",
        "--model.layers=1",
    ]
    run_casebook(
        ["fit", *clip],
        ["test", *clip, "--ckpt_path", "last"],
        ["fit", *aligner],
        ["test", *aligner, "--ckpt_path", "last"],
        env=cli_env,
        cwd=tmp_path,
    )

    assert (clip_root / "encoders" / "encoders.json").is_file()
    clip_metrics = json.loads((clip_root / "test_metrics.json").read_text())
    assert {"test/recall_at_1", "test/recall_at_5", "test/loss"} <= set(clip_metrics)
    metrics = json.loads((aligner_root / "test_metrics.json").read_text())
    for name in (
        "miou",
        "recall_iou0.3",
        "recall_iou0.5",
        "recall_iou0.7",
        "frame_acc",
        "step_recall",
    ):
        assert 0.0 <= metrics[f"test/{name}"] <= 1.0
        assert 0.0 <= metrics[f"test/random_{name}"] <= 1.0
    assert (aligner_root / "figures" / "test-timeline.png").stat().st_size > 0
    # error analysis: the lowest-mIoU test videos, worst first, consistent with the test mIoU
    worst = list(csv.DictReader((aligner_root / "reports" / "test-worst_videos.csv").open()))
    mious = [float(row["miou"]) for row in worst]
    assert worst and mious == sorted(mious) and mious[0] <= metrics["test/miou"] + 1e-6
    assert all(
        row["worst_step"] and float(row["worst_step_iou"]) <= float(row["miou"]) + 1e-6
        for row in worst
    )
    assert (aligner_root / "figures" / "test-worst_videos.png").stat().st_size > 5_000


def test_the_aligner_without_its_pretrained_encoders_says_how_to_make_them_in_one_line(
    cli_env, tmp_path
):
    from casebook_runner import casebook

    result = casebook(
        "fit", "--config", str(REPO / "configs/step_aligner.yaml"), *TINY_TRAINER, *TINY_DATA,
        f"--trainer.default_root_dir={tmp_path}", env=cli_env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("casebook: error: runs/clip_pretrainer/encoders")
    assert "configs/clip_pretrainer.yaml" in lines[-1] and "--model.pretrained null" in lines[-1]
    assert "Traceback" not in result.stderr
