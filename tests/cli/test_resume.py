"""Resume exactly: a run stopped in the middle of an epoch and resumed with `--ckpt_path last`
ends with the weights and the validation metrics of the uninterrupted run, for every task.

Each task runs tiny (speech and video also with two DataLoader workers), twice: A uninterrupted, B stopped by `stop_training.StopAt` at the start of
a batch of its second epoch, then resumed. Stops: SIGTERM (Lightning finishes the batch, then
`ExactResume` writes last.ckpt), in this process or in a `casebook` subprocess; and SIGKILL of a
subprocess, which resumes from the last periodic checkpoint (`--latest.every_n_train_steps`).
The one thing that differs: Lightning does not checkpoint the running means of metrics logged
with `on_epoch=True`, so the interrupted epoch's `train/...` epoch values average only the
batches after the resume. Every validation after the resume matches. A SIGTERM during validation
or the sanity check lets the pass finish and stops at the next training batch, as exactly.
"""

import json
from pathlib import Path

import pytest
import torch
from casebook_runner import casebook
from lightning.pytorch.utilities.exceptions import SIGTERMException
from tiny_speech import TINY_NETWORK

from casebook.cli import CasebookCLI

REPO = Path(__file__).resolve().parents[2]
QUIET = [
    "--config", str(REPO / "configs/presets/csv.yaml"),
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
]  # fmt: skip
TINY_VIDEO = [
    "--data.num_val_videos=2", "--data.num_test_videos=2", "--data.min_steps=2",
    "--data.max_steps=3", "--data.min_step_frames=3", "--data.max_step_frames=4",
    "--data.max_gap_frames=3", "--data.frame_size=16", "--trainer.max_epochs=2",
    "--trainer.limit_val_batches=1", "--model.encoder.cnn_width=4",
    "--model.encoder.text_hidden=16", "--model.encoder.text_layers=1",
    "--model.encoder.text_heads=2", "--model.encoder.embed_dim=16", "--model.warmup_steps=2",
]  # fmt: skip
TINY_SPEECH = [
    "--seed_everything=0", "--data.corpus.num_train_sentences=12",
    "--data.corpus.train_readings_per_sentence=1", "--data.corpus.num_val_sentences=4",
    "--data.corpus.num_test_sentences=4", "--data.batch_size=4", "--trainer.max_steps=7",
    "--trainer.val_check_interval=3", "--data.augmentation.noise_snr_db=[10, 30]",
    "--model.warmup_steps=2",
]  # fmt: skip
TINY_WAV2VEC2 = TINY_NETWORK | {"num_hidden_layers": 2}
# Every task 2 epochs (speech: 7 steps of ~4 per epoch), with its random parts switched on:
# PPO's sampled actions and the environments' episode starts, dropout, speech noise.
TASKS = {
    "ppo_trader": [
        "--config", str(REPO / "configs/ppo_trader.yaml"), "--data.source=synthetic",
        "--data.synthetic.days=3000", "--data.splits.train_end=2006-12-31", "--data.splits.valid_end=2008-06-30",
        "--data.num_envs=4", "--data.episode_length=16", "--data.iterations_per_epoch=4",
        "--model.ppo.rollout_steps=4", "--model.policy.init_args.width=4",
        "--model.policy.init_args.depth=1", "--model.policy.init_args.hidden=8",
        "--model.policy.init_args.dropout=0.1", "--model.backtest.random_baselines=2",
        "--trainer.max_epochs=2",
    ],
    "speech_teacher": [
        "--config", str(REPO / "configs/speech_teacher.yaml"), *TINY_SPEECH, "--model.dropout=0.1",
        *(f"--model.network.{k}={v}" for k, v in TINY_WAV2VEC2.items()),
    ],
    "speech_student": [
        "--config", str(REPO / "configs/speech_student.yaml"), *TINY_SPEECH,
    ],
    "speech_pretrain": [  # masks and negatives from NumPy's global generator
        "--config", str(REPO / "configs/speech_pretrain.yaml"), *TINY_SPEECH,
        *(f"--model.network.{k}={v}" for k, v in TINY_WAV2VEC2.items()),
        "--model.num_codevectors_per_group=16", "--model.codevector_dim=16",
        "--model.proj_codevector_dim=16", "--model.num_negatives=10",
    ],
    "clip_pretrainer": [
        "--config", str(REPO / "configs/clip_pretrainer.yaml"), *TINY_VIDEO,
        "--data.num_train_videos=4", "--data.batch_size=4",
    ],
    "step_aligner": [
        "--config", str(REPO / "configs/step_aligner.yaml"), *TINY_VIDEO,
        "--data.num_train_videos=8", "--data.batch_size=2", "--model.pretrained=null",
        "--model.freeze_encoders=false", "--model.hidden=16", "--model.layers=1",
    ],
}  # fmt: skip
# The SLURM templates run speech and video with DataLoader workers, where the per-item draws (the
# speech noise, the frame drawn from each step) happen.
for task in ("speech_teacher", "clip_pretrainer"):
    TASKS[f"{task}_workers"] = [*TASKS[task], "--data.num_workers=2"]
# How B stops (at the start of batch 1 or 2 of epoch 1; every task has 3 or 4 batches an epoch).
STOPS = {
    "ppo_trader": ("subprocess", "SIGTERM", 1),
    "speech_teacher": ("in-process", "SIGTERM", 0),
    "speech_student": ("in-process", "SIGTERM", 0),
    "speech_pretrain": ("in-process", "SIGTERM", 0),
    "clip_pretrainer": ("in-process", "SIGTERM", 1),
    "speech_teacher_workers": ("in-process", "SIGTERM", 0),
    "clip_pretrainer_workers": ("in-process", "SIGTERM", 1),
    # killed after the periodic checkpoint of step 6 (epoch 1, batch 1), before batch 2
    "step_aligner": ("subprocess", "SIGKILL", 2),
}
PERIODIC = {"step_aligner": ["--latest.every_n_train_steps=6"]}


@pytest.fixture(autouse=True)
def task_environment(monkeypatch, tiny_speech_env):
    """The in-process runs read the tiny speech corpus and never reach W&B."""
    for key in ("CASEBOOK_CACHE", "PYTHONPATH", "WANDB_MODE"):
        monkeypatch.setenv(key, tiny_speech_env[key])


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> str:
    """A randomly initialized tiny teacher for the student, exported as `casebook fit` does."""
    from lightning_modules.speech import Wav2Vec2CTCRecipe

    torch.manual_seed(0)
    recipe = Wav2Vec2CTCRecipe(network={**TINY_WAV2VEC2, "num_hidden_layers": 4})  # student: 1
    return str(recipe.export(tmp_path_factory.mktemp("teacher") / "hf"))


def fit(args: list[str]) -> CasebookCLI:
    return CasebookCLI(args=["fit", *args, *QUIET])


def stop_at(epoch: int, batch: int, signal: str) -> str:
    init = {"epoch": epoch, "batch": batch, "signal": signal}
    return "--trainer.callbacks+=" + json.dumps(
        {"class_path": "stop_training.StopAt", "init_args": init}
    )


def val_metrics(cli: CasebookCLI) -> dict[str, float]:
    return {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/")}


@pytest.mark.parametrize("task", list(TASKS))
def test_run_stopped_mid_epoch_resumes_to_the_uninterrupted_result(
    task, tmp_path, tiny_speech_env, request
):
    args = list(TASKS[task]) + PERIODIC.get(task, [])
    if task == "speech_student":
        args.append(f"--model.teacher={request.getfixturevalue('tiny_teacher')}")
    uninterrupted = fit([*args, f"--trainer.default_root_dir={tmp_path / 'a'}"])

    root = tmp_path / "b"
    where, signal, batch = STOPS[task]
    stopped = [*args, f"--trainer.default_root_dir={root}", stop_at(1, batch, signal)]
    if where == "subprocess":
        result = casebook("fit", *stopped, *QUIET, env=tiny_speech_env, cwd=tmp_path)
        if signal == "SIGTERM":
            assert result.returncode == 143, result.stderr[-3000:]
            assert "stopped by SIGTERM" in result.stderr
        else:
            assert result.returncode == -9, result.stderr[-3000:]
    else:
        with pytest.raises(SIGTERMException):
            fit(stopped)

    last = root / "checkpoints" / "last.ckpt"
    # a mid-epoch checkpoint that `--ckpt_path best` can read (it loads with weights_only=True)
    progress = torch.load(last, weights_only=True)["loops"]["fit_loop"]
    assert progress["epoch_progress"]["current"]["completed"] == 1
    fetched_in_epoch = progress["epoch_loop.batch_progress"]["current"]["ready"]
    assert fetched_in_epoch == (batch if signal == "SIGKILL" else batch + 1)

    resumed = fit([*args, f"--trainer.default_root_dir={root}", "--ckpt_path", "last"])

    weights, expected = resumed.model.state_dict(), uninterrupted.model.state_dict()
    assert weights.keys() == expected.keys()
    different = [name for name in expected if not torch.equal(weights[name], expected[name])]
    assert not different, f"weights differ after the resume: {different[:5]}"
    assert val_metrics(uninterrupted), "no validation metrics to compare"
    assert val_metrics(resumed) == val_metrics(uninterrupted)


@pytest.mark.parametrize("during", ["sanity_check", "validation"])
def test_sigterm_during_validation_or_the_sanity_check_leaves_a_last_ckpt_that_resumes_exactly(
    during, tmp_path, tiny_speech_env
):
    # two validation batches, so that Lightning would stop between them
    args = [
        *TASKS["clip_pretrainer"], "--data.num_val_videos=3", "--trainer.limit_val_batches=2",
        "--trainer.num_sanity_val_steps=2",
    ]  # fmt: skip
    uninterrupted = fit([*args, f"--trainer.default_root_dir={tmp_path / 'a'}"])

    root = tmp_path / "b"
    stop = {"class_path": "stop_training.StopInValidation"}
    stop["init_args"] = {"sanity_check": during == "sanity_check"}
    stopped = [
        *args,
        f"--trainer.default_root_dir={root}",
        f"--trainer.callbacks+={json.dumps(stop)}",
    ]
    result = casebook("fit", *stopped, *QUIET, env=tiny_speech_env, cwd=tmp_path)
    assert result.returncode == 143, result.stderr[-3000:]
    assert "stopped by SIGTERM" in result.stderr
    # the pass finished, then training stopped at its next batch boundary
    saved = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] >= 1

    resumed = fit([*args, f"--trainer.default_root_dir={root}", "--ckpt_path", "last"])
    weights, expected = resumed.model.state_dict(), uninterrupted.model.state_dict()
    different = [name for name in expected if not torch.equal(weights[name], expected[name])]
    assert not different, f"weights differ after the resume: {different[:5]}"
    assert val_metrics(resumed) == val_metrics(uninterrupted)
