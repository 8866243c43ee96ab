"""Every task config fits with the ddp_cpu preset (two CPU processes, gloo), and DDP does what a
user relies on: each rank trains on its own shard (the trading agent on its own environments),
the ranks end with the same weights, rank 0 logs the validation metrics of the whole split, and
the contrastive loss counts the other rank's pairs as negatives.

The five fits run in one pair of processes, in order (`casebook_runner`): each new interpreter
costs ~15 s of imports on a busy 2-core machine, and DDP starts two. A fit that reads another's
output comes two fits later: rank 1 can leave a fit before rank 0 has exported (after the last
collective), but cannot pass the first collective of the next fit until rank 0 gets there too.
"""

import csv
import json
import re
from pathlib import Path

import pytest
import torch
from casebook_runner import casebook_commands

from casebook.cli import CasebookCLI

REPO = Path(__file__).resolve().parents[2]
DDP = [
    "--config", str(REPO / "configs/presets/ddp_cpu.yaml"),
    "--config", str(REPO / "configs/presets/csv.yaml"),
    "--trainer.callbacks+=run_probe.RunProbe",  # writes probe/rank<k>.json
]  # fmt: skip
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
# 6 train videos (16 pairs: 8 per rank, one batch) and 2 val videos (6 pairs: 3 per rank).
VIDEO = [
    "--data.num_train_videos=6", "--data.num_val_videos=2", "--data.num_test_videos=2",
    "--data.min_steps=2", "--data.max_steps=3", "--data.min_step_frames=3", "--data.max_step_frames=4",
    "--data.max_gap_frames=3", "--data.frame_size=16", "--data.batch_size=8", "--trainer.max_epochs=1",
]  # fmt: skip
# The session's tiny corpus (tiny_speech_env); 4 val utterances: 2 batches, one per rank.
SPEECH = [
    "--data.corpus.num_train_sentences=12", "--data.corpus.num_val_sentences=4",
    "--data.corpus.num_test_sentences=4",
    "--data.batch_size=2", "--trainer.max_steps=2", "--trainer.val_check_interval=2",
]  # fmt: skip


def task_arguments(root: Path) -> dict[str, list[str]]:
    """`casebook fit` arguments of each task, tiny, writing under root/<task>; in running order."""
    return {
        "clip_pretrainer": [
            "--config", str(REPO / "configs/clip_pretrainer.yaml"), *VIDEO,
            "--model.encoder.cnn_width=4", "--model.encoder.text_hidden=16", "--model.encoder.text_layers=1",
            "--model.encoder.text_heads=2", "--model.encoder.embed_dim=16",
        ],
        "speech_teacher": [
            "--config", str(REPO / "configs/speech_teacher.yaml"), *SPEECH,
            "--model.network.hidden_size=32", "--model.network.num_hidden_layers=4", "--model.network.num_attention_heads=2",
            "--model.network.intermediate_size=64", "--model.network.conv_dim=[16, 16]", "--model.network.num_conv_pos_embeddings=8",
            "--model.network.num_conv_pos_embedding_groups=4",
        ],
        "step_aligner": [
            "--config", str(REPO / "configs/step_aligner.yaml"), *VIDEO,
            f"--model.pretrained={root / 'clip_pretrainer' / 'encoders'}", "--model.hidden=16", "--model.layers=1",
        ],
        "ppo_trader": [
            "--config", str(REPO / "configs/ppo_trader.yaml"),
            "--data.source=synthetic", "--data.synthetic.days=3000", "--data.splits.train_end=2006-12-31",
            "--data.splits.valid_end=2008-06-30", "--data.window=8", "--data.num_envs=8", "--data.episode_length=16",
            "--data.iterations_per_epoch=2", "--model.policy.init_args.depth=2", "--model.ppo.rollout_steps=8",
            "--model.ppo.target_kl=0.001", "--trainer.max_epochs=1",
        ],
        "speech_student": [
            "--config", str(REPO / "configs/speech_student.yaml"), *SPEECH,
            f"--model.teacher={root / 'speech_teacher' / 'hf'}",
        ],
    }  # fmt: skip


TASKS = list(task_arguments(Path()))
# Per task: validation metrics rank 0 must log over the whole split.
SYNCED_METRICS = {
    "clip_pretrainer": ["val/loss", "val/recall_at_1", "val/recall_at_5"],
    "speech_teacher": ["val/loss", "val/wer", "val/cer"],
    "step_aligner": ["val/loss", "val/miou", "val/frame_acc"],
    "ppo_trader": ["val/sharpe"],
    "speech_student": ["val/loss", "val/kl_loss", "val/wer", "val/cer", "val/teacher_wer"],
}
# Single-process validation that batches the split as the two ranks did together.
SINGLE_PROCESS = {"step_aligner": ["--data.batch_size=1"]}  # a rank's shard was one video


@pytest.fixture(scope="module")
def ddp_root(tiny_speech_env, tmp_path_factory) -> Path:
    """All tasks fitted with the ddp_cpu preset, one after the other in one pair of processes."""
    root = tmp_path_factory.mktemp("ddp")
    commands = [
        ["fit", *arguments, *DDP, *QUIET, f"--trainer.default_root_dir={root / task}"]
        for task, arguments in task_arguments(root).items()
    ]
    result = casebook_commands(*commands, env=tiny_speech_env, cwd=root, timeout=240)
    (root / "stdout.txt").write_text(result.stdout)
    (root / "stderr.txt").write_text(result.stderr)
    return root


def probes(root: Path, task: str) -> list[dict]:
    """What each rank recorded (run_probe.RunProbe), rank 0 first; fails unless the task's
    command finished on both ranks."""
    stdout = (root / "stdout.txt").read_text()
    finished = len(re.findall(rf"finished: {TASKS.index(task)}(?!\d)", stdout))
    if finished != 2:
        stderr = (root / "stderr.txt").read_text()
        pytest.fail(f"{task} finished on {finished} of 2 ranks:\n{stderr[-3000:]}")
    return [json.loads((root / task / "probe" / f"rank{k}.json").read_text()) for k in (0, 1)]


def logged(root: Path, task: str, key: str) -> float:
    """The last value of `key` in the task's CSV log (CSVLogger writes on rank 0 only)."""
    with open(root / task / "csv" / "version_0" / "metrics.csv", newline="") as f:
        values = [row[key] for row in csv.DictReader(f) if row.get(key)]
    assert values, f"{key} was not logged"
    return float(values[-1])


@pytest.fixture(scope="module")
def single_process(ddp_root, tiny_speech_env):
    """task -> (CasebookCLI of the same tiny config on one process, DDP's last.ckpt)."""
    built = {}

    def build(task: str):
        if task not in built:
            arguments = task_arguments(ddp_root)[task] + SINGLE_PROCESS.get(task, [])
            cli = CasebookCLI(
                args=[
                    *arguments, *QUIET, "--trainer.logger=false",
                    f"--trainer.default_root_dir={ddp_root / 'single' / task}",
                ],
                run=False,
            )  # fmt: skip
            built[task] = cli, ddp_root / task / "checkpoints" / "last.ckpt"
        return built[task]

    with pytest.MonkeyPatch.context() as patch:  # the DDP run's corpus and tokenizer
        patch.setenv("CASEBOOK_CACHE", tiny_speech_env["CASEBOOK_CACHE"])
        yield build


@pytest.mark.parametrize("task", TASKS)
def test_two_ranks_fit_and_end_with_the_same_weights(ddp_root, task):
    rank0, rank1 = probes(ddp_root, task)
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["weights"] == rank1["weights"], "DDP must keep the ranks' weights equal"
    assert (ddp_root / task / "checkpoints" / "last.ckpt").exists()


@pytest.mark.parametrize("task", [t for t in TASKS if t != "ppo_trader"])
def test_each_rank_trains_and_validates_on_its_own_shard(ddp_root, task):
    rank0, rank1 = probes(ddp_root, task)
    for split in ("train_ids", "val_ids"):
        assert rank0[split] and rank1[split], split
        assert not set(rank0[split]) & set(rank1[split]), f"{split}: the ranks share samples"


def test_trading_ranks_run_differently_seeded_environments(ddp_root):
    rank0, rank1 = probes(ddp_root, "ppo_trader")
    assert (rank0["env_seed"], rank1["env_seed"]) == (0, 1)  # data.seed + rank
    assert rank0["env_start_rows"] != rank1["env_start_rows"]


@pytest.mark.parametrize("task", TASKS)
def test_rank_zero_logs_validation_metrics_of_the_whole_split(ddp_root, single_process, task):
    """What rank 0 logged under DDP equals one process validating the same checkpoint on the
    whole validation split, the two ranks' shards together."""
    probes(ddp_root, task)
    cli, checkpoint = single_process(task)
    (expected,) = cli.trainer.validate(
        cli.model, datamodule=cli.datamodule, ckpt_path=str(checkpoint), verbose=False
    )
    for key in SYNCED_METRICS[task]:
        assert logged(ddp_root, task, key) == pytest.approx(expected[key], rel=1e-4, abs=1e-5), key


def test_contrastive_loss_counts_the_other_ranks_pairs_as_negatives(ddp_root, single_process):
    """val/loss equals CLIP's loss over both ranks' pairs together, not the mean of each rank's
    loss over its own pairs (half the negatives)."""
    rank0, rank1 = probes(ddp_root, "clip_pretrainer")
    cli, checkpoint = single_process("clip_pretrainer")
    model, data = cli.model, cli.datamodule
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"])
    model.eval()
    dataset = data.dataset("val")
    items = {
        f"{item['video_id']}: {item['text']}": item
        for item in map(dataset.__getitem__, range(len(dataset)))
    }
    collate = data.val_dataloader().collate_fn
    with torch.no_grad():
        shards = [
            model.model_step(collate([items[i] for i in r["val_ids"]]))[0] for r in (rank0, rank1)
        ]
        together = model.model_step(
            collate([items[i] for i in rank0["val_ids"] + rank1["val_ids"]])
        )[0]
    logged_loss = logged(ddp_root, "clip_pretrainer", "val/loss")
    assert logged_loss == pytest.approx(together.item(), rel=1e-4)
    assert logged_loss != pytest.approx(torch.stack(shards).mean().item(), rel=1e-2)


def test_cli_instantiation_leaves_synthesizing_the_tts_corpus_to_prepare_data(
    tmp_path, monkeypatch
):
    """Every DDP rank instantiates the CLI; only `prepare_data`, on one process, may synthesize."""
    monkeypatch.setenv("CASEBOOK_CACHE", str(tmp_path / "cache"))
    CasebookCLI(
        args=[
            "--config", str(REPO / "configs/speech_teacher.yaml"), "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        run=False,
    )  # fmt: skip
    assert not (tmp_path / "cache" / "speech").exists()
