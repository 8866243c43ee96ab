"""SLURM: `casebook fit` under Lightning's own SLURMEnvironment and auto-requeue, and the sbatch
templates' commands."""

import json
import os
import re
import shlex
import signal
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment

from casebook.cli import CasebookCLI

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((REPO / "configs" / "slurm").glob("*.sbatch"))


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


def expand(word: str, values: dict[str, str]) -> str:
    """The shell's ${NAME} and ${NAME:-default}, from `values`."""

    def value(match: re.Match) -> str:
        name, default = match.groups()
        if name in values:
            return values[name]
        if default is None:
            raise KeyError(f"${{{name}}} is not set")
        return default

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", value, word)


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.stem for t in TEMPLATES])
def test_sbatch_template_requeues_and_its_commands_parse(template, tmp_path, capsys):
    text = template.read_text()
    assert "#SBATCH --signal=SIGUSR1@90" in text and "#SBATCH --requeue" in text
    assert re.search(r"#SBATCH --ntasks-per-node=\d+", text)
    assert '--trainer.num_nodes="${SLURM_JOB_NUM_NODES}"' in text
    assert '--trainer.devices="${SLURM_NTASKS_PER_NODE}"' in text
    assert f'ROOT="runs/{template.stem}/slurm-${{SLURM_JOB_ID}}"' in text  # stable across requeues
    commands = re.findall(
        r"srun (?:--ntasks=1 )?\.venv/bin/casebook (.+?)(?:\n\n|\Z)",
        text.replace("\\\n", " "),
        re.S,
    )
    assert [c.split()[0] for c in commands] == ["fit", "test"]
    values = {
        "SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_CPUS_PER_TASK": "4", "ROOT": str(tmp_path / "root"),
    }  # fmt: skip
    for name, value in re.findall(r'^(\w+)="(.*)"$', text, re.M):  # the script's own variables
        values.setdefault(name, expand(value, values))
    for command in commands:
        arguments = [expand(a, values) for a in shlex.split(command)]
        assert arguments[1:3] == ["--config", f"configs/{template.stem}.yaml"]
        arguments = [str(REPO / a) if a.startswith("configs/") else a for a in arguments]
        # parsed in this process (an interpreter start costs more than the parse): print and exit
        with pytest.raises(SystemExit) as exit_:
            CasebookCLI(args=[*arguments, "--print_config"])
        assert exit_.value.code in (0, None), capsys.readouterr().err[-2000:]
        assert f"default_root_dir: {values['ROOT']}" in capsys.readouterr().out
