"""W&B sweeps: each sweep's command, rendered by wandb's own agent helpers, runs a real trial."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from casebook.cli import CasebookCLI

REPO = Path(__file__).resolve().parents[2]
SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))
SPEECH = [  # the session's tiny corpus (tiny_speech_env)
    "--data.corpus.num_train_sentences=12", "--data.corpus.num_val_sentences=4",
    "--data.corpus.num_test_sentences=4",
    "--data.batch_size=4", "--trainer.max_steps=2", "--trainer.val_check_interval=2",
]  # fmt: skip
TINY_TEACHER = [
    "--model.network.hidden_size=32", "--model.network.num_hidden_layers=4", "--model.network.num_attention_heads=2",
    "--model.network.intermediate_size=64", "--model.network.conv_dim=[16, 16]", "--model.network.num_conv_pos_embeddings=8",
    "--model.network.num_conv_pos_embedding_groups=4",
]  # fmt: skip
VIDEO = [
    "--data.num_train_videos=4", "--data.num_val_videos=2", "--data.num_test_videos=2",
    "--data.min_steps=2", "--data.max_steps=3", "--data.min_step_frames=3", "--data.max_step_frames=4",
    "--data.max_gap_frames=3", "--data.frame_size=16", "--data.batch_size=4", "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2", "--model.encoder.cnn_width=4", "--model.encoder.text_hidden=16",
    "--model.encoder.text_layers=1", "--model.encoder.text_heads=2", "--model.encoder.embed_dim=16",
]  # fmt: skip
TINY = {  # per sweep: overrides that make one trial take seconds (after the sweep's own args)
    "ppo_trader": [
        "--data.source=synthetic", "--data.synthetic.days=3000", "--data.splits.train_end=2006-12-31",
        "--data.splits.valid_end=2008-06-30", "--data.num_envs=4", "--data.episode_length=16",
        "--data.iterations_per_epoch=1", "--model.ppo.rollout_steps=4", "--trainer.max_epochs=1",
    ],
    "speech_teacher": [*SPEECH, *TINY_TEACHER],
    "speech_student": [*SPEECH, "--model.teacher={tiny_speech_teacher}"],
    "clip_pretrainer": VIDEO,
    # fresh tiny encoders: a trial needs no pre-training run
    "step_aligner": [*VIDEO, "--model.pretrained=null", "--model.hidden=16", "--model.layers=1"],
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
def test_sweep_names_a_validation_metric_and_cli_options(path, capsys):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["metric"]["name"].startswith("val/") and sweep["metric"]["goal"] in (
        "minimize",
        "maximize",
    )
    command = agent_command(sweep, sampled_values(sweep["parameters"]))
    assert command[:5] == ["/usr/bin/env", sys.executable, "-m", "casebook", "fit"]
    assert f"configs/{path.stem}.yaml" in command
    # every parameter is a LightningCLI option of this task and its sampled value parses
    # (parsed and printed, not instantiated: a trial may need a teacher or encoders)
    with pytest.raises(SystemExit) as exit_:
        CasebookCLI(args=[*absolute_configs(command[4:]), "--print_config"])
    assert exit_.value.code in (0, None), capsys.readouterr().err[-2000:]
    config = yaml.safe_load(capsys.readouterr().out)
    for name, value in sampled_values(sweep["parameters"]).items():
        group, *option = name.split(".")
        parsed = config[group]["init_args"]
        for key in option:
            parsed = parsed[key]
        assert parsed == value, name


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_one_tiny_trial_runs_offline_logs_the_metric_and_two_trials_do_not_clash(
    path, cli_env, tmp_path, monkeypatch, request
):
    sweep = yaml.safe_load(path.read_text())
    command = agent_command(sweep, sampled_values(sweep["parameters"]))
    root = tmp_path / "root"
    tiny = TINY[path.stem]
    if any("{tiny_speech_teacher}" in a for a in tiny):
        teacher = request.getfixturevalue("tiny_speech_teacher")
        tiny = [a.format(tiny_speech_teacher=teacher) for a in tiny]
    extra = [f"--trainer.default_root_dir={root}", *tiny]
    env = request.getfixturevalue("tiny_speech_env") if path.stem.startswith("speech") else cli_env
    env = dict(env, WANDB_SWEEP_ID="sweep1", WANDB_RUN_ID="trial1", WANDB_MODE="offline")
    # the agent's command verbatim (`configs/...` relative), in a folder of the test's own
    (tmp_path / "configs").symlink_to(REPO / "configs")
    result = subprocess.run(
        [*command, *extra, "--trainer.callbacks+=run_probe.RunProbe"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    trial = root / "sweep-sweep1" / "trial1"
    assert (trial / "checkpoints" / "last.ckpt").exists()
    assert list((trial / "wandb").glob("offline-run-*-trial1")), "the W&B run is the sweep trial's"
    logged = json.loads((trial / "probe" / "rank0.json").read_text())["logged"]
    assert sweep["metric"]["name"] in logged, "the sweep's metric is never logged"

    # the next trial: same command, same directory, a directory of its own
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep1")
    monkeypatch.setenv("WANDB_RUN_ID", "trial2")
    monkeypatch.setenv("CASEBOOK_CACHE", env["CASEBOOK_CACHE"])
    second = CasebookCLI(args=[*absolute_configs(command[5:]), *extra], run=False)
    assert Path(second.trainer.default_root_dir) == root / "sweep-sweep1" / "trial2"
    assert (
        Path(second.trainer.checkpoint_callback.dirpath)
        == root / "sweep-sweep1" / "trial2" / "checkpoints"
    )
