"""W&B sweeps: each sweep's command, rendered by wandb's own agent helpers, runs a real trial."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from casebook.cli import CasebookCLI

REPO = Path(__file__).resolve().parents[2]
SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))
TINY = {  # per sweep: overrides that make one trial take seconds (after the sweep's own args)
    "ppo_trader": [
        "--data.source=synthetic", "--data.synthetic_days=3000", "--data.train_end=2006-12-31",
        "--data.valid_end=2008-06-30", "--data.num_envs=4", "--data.episode_length=16",
        "--data.iterations_per_epoch=1", "--model.rollout_steps=4", "--trainer.max_epochs=1",
    ],
}  # fmt: skip


def sampled_values(parameters: dict) -> dict:
    """One value per parameter, as the sweep controller would send (the last of a list, the min of a range)."""
    return {
        name: spec["values"][-1] if "values" in spec else spec["min"]
        for name, spec in parameters.items()
    }


def agent_command(sweep: dict, values: dict) -> list[str]:
    """The command line wandb's agent builds (wandb_agent.Agent._command_run) for these values."""
    sweep_vars = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    sweep_vars.update(
        interpreter=[sys.executable], env=["/usr/bin/env"], program=[sweep.get("program", "")]
    )
    command = []
    for chunk in map(str, create_sweep_command(list(sweep["command"]))):
        macro = chunk.startswith("${") and chunk.endswith("}")
        command += sweep_vars.get(chunk[2:-1], []) if macro else [chunk]
    return command


def absolute_configs(arguments: list[str]) -> list[str]:
    return [str(REPO / a) if a.startswith("configs/") else a for a in arguments]


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_names_a_logged_metric_and_cli_options(path, tmp_path):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["metric"]["name"].startswith("val/") and sweep["metric"]["goal"] in (
        "minimize",
        "maximize",
    )
    command = agent_command(sweep, sampled_values(sweep["parameters"]))
    assert command[:5] == ["/usr/bin/env", sys.executable, "-m", "casebook", "fit"]
    # every parameter is a LightningCLI option of this task and its sampled value parses
    cli = CasebookCLI(
        args=[*absolute_configs(command[5:]), f"--trainer.default_root_dir={tmp_path}"], run=False
    )
    for name, value in sampled_values(sweep["parameters"]).items():
        group, option = name.split(".", 1)
        assert cli.config[group]["init_args"][option] == value


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_one_tiny_trial_runs_offline_and_two_trials_do_not_clash(
    path, cli_env, tmp_path, monkeypatch
):
    sweep = yaml.safe_load(path.read_text())
    command = agent_command(sweep, sampled_values(sweep["parameters"]))
    root = tmp_path / "root"
    extra = [f"--trainer.default_root_dir={root}", *TINY[path.stem]]
    env = dict(cli_env, WANDB_SWEEP_ID="sweep1", WANDB_RUN_ID="trial1", WANDB_MODE="offline")
    result = subprocess.run(
        [*command, *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trial = root / "sweep-sweep1" / "trial1"
    assert (trial / "checkpoints" / "last.ckpt").exists()
    assert list((trial / "wandb").glob("offline-run-*-trial1")), "the W&B run is the sweep trial's"

    # the next trial: same command, same directory, a directory of its own
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep1")
    monkeypatch.setenv("WANDB_RUN_ID", "trial2")
    second = CasebookCLI(args=[*absolute_configs(command[5:]), *extra], run=False)
    assert Path(second.trainer.default_root_dir) == root / "sweep-sweep1" / "trial2"
    assert (
        Path(second.trainer.checkpoint_callback.dirpath)
        == root / "sweep-sweep1" / "trial2" / "checkpoints"
    )
