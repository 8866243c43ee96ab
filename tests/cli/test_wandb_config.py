"""The full resolved config reaches the W&B run (issue 15, item 6): flat, one key per option as
the command line names it, once; and a sweep trial's config is exactly its command line's."""

import contextlib
import importlib.util
import io
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from wandb.sdk.lib import config_util

from casebook.cli import CasebookCLI, command_line_options

REPO = Path(__file__).resolve().parents[2]
SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))

# the agent's command line as test_sweeps.py renders it with wandb's own helpers (a sibling
# module, loaded by path: pytest runs in importlib mode)
_spec = importlib.util.spec_from_file_location(
    "test_sweeps", Path(__file__).with_name("test_sweeps.py")
)
_sweeps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_sweeps)
agent_command, sampled_values = _sweeps.agent_command, _sweeps.sampled_values


def test_options_are_named_as_on_the_command_line():
    resolved = {
        "seed_everything": 0,
        "model": {
            "class_path": "m.Agent",
            "init_args": {
                "lr": 0.001,
                "teacher": None,
                "ppo": {"gamma": 0.9},
                "policy": {"class_path": "m.Policy", "init_args": {"depth": 4}},
            },
        },
        "trainer": {"max_epochs": 3, "callbacks": [{"class_path": "c.Probe"}], "plugins": {}},
    }
    assert command_line_options(resolved) == {
        "seed_everything": 0,
        "model.class_path": "m.Agent",
        "model.lr": 0.001,
        "model.teacher": None,
        "model.ppo.gamma": 0.9,
        "model.policy.class_path": "m.Policy",
        "model.policy.init_args.depth": 4,  # as `--model.policy.init_args.depth` and the sweeps
        "trainer.max_epochs": 3,
        "trainer.callbacks": [{"class_path": "c.Probe"}],
        "trainer.plugins": {},
    }


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_sweep_parameter_is_a_logged_option_with_the_value_its_trial_was_given(path):
    """Parsed, not run: the trial's resolved config, flat as the loggers get it, holds each
    sweep parameter under the sweep's own name with the sampled value."""
    sweep = yaml.safe_load(path.read_text())
    values = sampled_values(sweep["parameters"])
    command = agent_command(sweep, values)
    arguments = [str(REPO / a) if a.startswith("configs/") else a for a in command[4:]]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        CasebookCLI(args=[*arguments, "--print_config"])
    assert exit_.value.code in (0, None), out.getvalue()[-2000:]
    options = command_line_options(yaml.safe_load(out.getvalue()))
    assert {name: options.get(name, "<not logged>") for name in values} == values


TINY = """
model: {class_path: tiny_task.TinyRegressor}
data: {class_path: tiny_task.TinyDataModule, init_args: {num_features: 3}}
trainer:
  max_epochs: 1
  default_root_dir: run
  enable_progress_bar: false
  enable_model_summary: false
  log_every_n_steps: 1
"""


def test_a_sweep_trials_wandb_config_is_its_resolved_config_and_nothing_else(cli_env, tmp_path):
    """A trial as wandb's agent starts one, offline: the sweep's values in the file the agent
    writes (WANDB_SWEEP_PARAM_PATH, locked in the run's config), the command rendered from
    `${args}`. The run's config ends up exactly the trial's config.yaml, flat; no warning that a
    sweep value was overwritten, nor the known start-up noise."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    values = {"model.lr": 0.02, "model.hidden": 5, "data.batch_size": 8}
    sweep = {
        "command": [
            "${env}",
            "${interpreter}",
            "-m",
            "casebook",
            "fit",
            "--config",
            "tiny.yaml",
            "${args}",
        ]
    }
    command = agent_command(sweep, values)
    assert "--model.hidden=5" in command
    config_util.save_config_file_from_dict(
        str(tmp_path / "sweep-params.yaml"), {k: {"value": v} for k, v in values.items()}
    )
    env = {k: v for k, v in cli_env.items() if k != "WANDB_SILENT"}
    env.update(
        WANDB_SWEEP_ID="sweep1",
        WANDB_RUN_ID="trial1",
        WANDB_SWEEP_PARAM_PATH=str(tmp_path / "sweep-params.yaml"),
    )
    result = subprocess.run(
        [*command, "--trainer.callbacks+=wandb_config_probe.WandbConfigProbe"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    trial = tmp_path / "run" / "sweep-sweep1" / "trial1"
    logged = json.loads((trial / "wandb_config.json").read_text())
    resolved = command_line_options(yaml.safe_load((trial / "config.yaml").read_text()))
    assert logged == json.loads(json.dumps(resolved))
    assert {k: logged[k] for k in values} == values
    assert resolved["trainer.default_root_dir"] == str(Path("run") / "sweep-sweep1" / "trial1")
    output = result.stdout + result.stderr
    for noise in ("locked by", "anonymous setting", "Tip: For seamless", "LeafSpec", "git root"):
        assert noise not in output, noise
