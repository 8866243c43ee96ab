"""SLURM: `casebook fit` under Lightning's own SLURMEnvironment and auto-requeue, and the one sbatch
template's commands for every task."""

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment

from casebook.cli import CasebookCLI

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def one_task_slurm_job(monkeypatch, tmp_path):
    """The environment srun gives a one-task job, and a stand-in `scontrol` that records its call."""
    for key, value in {
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_JOB_NAME": "casebook-test",
        "SLURM_JOB_ID": "4242",
        "SLURM_NODEID": "0",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NODELIST": "localhost",
    }.items():
        monkeypatch.setenv(key, value)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


# `casebook fit` of the trading recipe, tiny: 2 epochs of 4 PPO iterations
PPO_TRADER = [
    "--config", str(REPO / "configs/ppo_trader.yaml"),
    "--config", str(REPO / "configs/presets/csv.yaml"),
    "--data.source=synthetic", "--data.synthetic.days=3000",
    "--data.splits.train_end=2006-12-31", "--data.splits.valid_end=2008-06-30",
    "--data.num_envs=4", "--data.episode_length=16", "--data.iterations_per_epoch=4",
    "--model.ppo.rollout_steps=4", "--model.policy.init_args.width=4",
    "--model.policy.init_args.depth=1", "--model.policy.init_args.hidden=8",
    "--model.backtest.random_baselines=2", "--trainer.max_epochs=2",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
]  # fmt: skip


def test_sigusr1_saves_an_hpc_checkpoint_and_requeues_and_the_requeued_fit_resumes_from_it(
    one_task_slurm_job,
):
    root = one_task_slurm_job / "run"
    command = ["fit", *PPO_TRADER, f"--trainer.default_root_dir={root}"]
    signal_at = {"class_path": "stop_training.SignalAtStep", "init_args": {"step": 2}}
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        job = CasebookCLI(args=[*command, f"--trainer.callbacks+={json.dumps(signal_at)}"])
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert isinstance(job.trainer._accelerator_connector.cluster_environment, SLURMEnvironment)
    saved_at = torch.load(root / "hpc_ckpt_1.ckpt", weights_only=True)["global_step"]
    assert 2 <= saved_at < job.trainer.global_step
    assert (one_task_slurm_job / "scontrol.log").read_text().split() == ["requeue", "4242"]

    # The requeued job runs the same command (same job id, same default_root_dir) and resumes
    # from that checkpoint by itself, to where the job would have ended.
    try:
        requeued = CasebookCLI(args=command)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert requeued.trainer.ckpt_path == str(root / "hpc_ckpt_1.ckpt")
    assert requeued.trainer.global_step == job.trainer.global_step
    weights, expected = requeued.model.state_dict(), job.model.state_dict()
    assert all(torch.equal(weights[name], expected[name]) for name in expected)


SBATCH = REPO / "configs" / "slurm" / "casebook.sbatch"
# a task's config names its datamodule; the others are layers (`--config configs/a2c_trader.yaml`)
TASKS = sorted(
    p.stem for p in (REPO / "configs").glob("*.yaml") if "class_path: datamodules" in p.read_text()
)


def run_sbatch(tmp_path: Path, *arguments: str) -> tuple[subprocess.CompletedProcess, list[list]]:
    """Run the sbatch script as SLURM would (from the repository root, SLURM's variables set),
    with a stand-in `srun` that records each command it is given instead of running it."""
    calls = tmp_path / "srun-calls"
    calls.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{calls}/$(ls "{calls}" | wc -l)"\n')
    srun.chmod(0o755)
    root = tmp_path / "repo"  # the repository as the job sees it; runs/ is written here
    root.mkdir()
    (root / "configs").symlink_to(REPO / "configs")
    env = {
        **os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "7",
        "SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS_PER_NODE": "2", "SLURM_CPUS_PER_TASK": "4",
    }  # fmt: skip
    done = subprocess.run(
        ["bash", str(SBATCH), *arguments], cwd=root, env=env, capture_output=True, text=True
    )
    recorded = sorted(calls.iterdir(), key=lambda p: int(p.name))
    return done, [p.read_text().splitlines() for p in recorded]


def test_sbatch_template_requeues_on_the_time_limit_signal():
    text = SBATCH.read_text()
    assert "#SBATCH --signal=SIGUSR1@90" in text and "#SBATCH --requeue" in text
    assert re.search(r"#SBATCH --ntasks-per-node=\d+", text)


@pytest.mark.parametrize("task", TASKS)
def test_sbatch_template_runs_every_task_with_ddp_then_tests_its_best_checkpoint(
    task, tmp_path, capsys
):
    done, calls = run_sbatch(tmp_path, task)
    assert done.returncode == 0, done.stderr
    (fit, test) = calls
    assert fit[:4] == [".venv/bin/casebook", "fit", "--config", f"configs/{task}.yaml"]
    assert test[:5] == [
        "--ntasks=1",
        ".venv/bin/casebook",
        "test",
        "--config",
        f"configs/{task}.yaml",
    ]
    root = f"runs/{task}/slurm-7"  # the job id: the same directory after a requeue
    assert "--trainer.num_nodes=1" in fit and "--trainer.devices=2" in fit
    assert "--trainer.strategy=ddp" in fit and "--ckpt_path=best" in test
    assert ("--data.num_workers=4" in fit) == (not task.endswith("_trader"))
    for command in (fit[fit.index("fit") :], test[test.index("test") :]):
        arguments = [str(REPO / a) if a.startswith("configs/") else a for a in command]
        # parsed in this process (an interpreter start costs more than the parse): print and exit
        with pytest.raises(SystemExit) as exit_:
            CasebookCLI(args=[*arguments, "--print_config"])
        assert exit_.value.code in (0, None), capsys.readouterr().err[-2000:]
        assert f"default_root_dir: {root}" in capsys.readouterr().out


def test_sbatch_options_after_the_task_reach_fit_and_test(tmp_path):
    teacher = "--model.teacher=runs/speech_teacher/slurm-1234/hf"
    done, (fit, test) = run_sbatch(tmp_path, "speech_student", teacher)
    assert done.returncode == 0, done.stderr
    assert fit[-1] == teacher and test[-1] == teacher


def test_sbatch_without_a_known_task_stops_in_one_line(tmp_path):
    done, calls = run_sbatch(tmp_path, "ppo_trder")
    assert done.returncode == 2 and calls == []
    assert done.stderr.strip() == (
        "casebook.sbatch: no configs/ppo_trder.yaml: give a task, e.g. "
        "sbatch configs/slurm/casebook.sbatch ppo_trader (run from the repository root)"
    )
