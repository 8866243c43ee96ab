"""The command line as a user types it, in subprocesses (fresh interpreter, like a shell)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from casebook_runner import casebook

from casebook.cli import main, wandb_offline_unless_logged_in

REPO = Path(__file__).resolve().parents[2]

TINY = """
model: {class_path: tiny_task.TinyRegressor}
data: {class_path: tiny_task.TinyDataModule, init_args: {num_features: 3}}
trainer:
  max_epochs: 2
  default_root_dir: %(root)s
  enable_progress_bar: false
  enable_model_summary: false
  log_every_n_steps: 1
  callbacks:
    - class_path: callbacks.GradNormMonitor
      init_args: {log_every_n_steps: 1, activation_every_n_steps: 2}
    - class_path: callbacks.AdaptiveGradClip
      init_args: {percentile: 50, log_every_n_steps: 1}
    - class_path: callbacks.TrainValidSkew
      init_args: {metrics: [loss]}
"""


@pytest.fixture
def tiny_config(tmp_path):
    root = tmp_path / "run"
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY % {"root": root})
    return path, root


def test_cli_env_keeps_cache_and_home_under_tmp_path_whatever_the_shell_sets(
    monkeypatch, tmp_path, request
):
    monkeypatch.setenv("CASEBOOK_CACHE", str(tmp_path.parent / "the-users-cache"))
    monkeypatch.setenv("HOME", str(tmp_path.parent / "the-users-home"))
    env = request.getfixturevalue("cli_env")
    for key in ("CASEBOOK_CACHE", "HOME"):
        assert Path(env[key]).is_relative_to(tmp_path), key


def test_help_lists_the_subcommands(cli_env, tmp_path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "casebook"), "--help"],
        env=cli_env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    for subcommand in ("fit", "validate", "test", "predict"):
        assert subcommand in result.stdout


def test_fit_resume_and_test_write_metrics_checkpoints_and_csv_logs(cli_env, tmp_path, tiny_config):
    config, root = tiny_config
    csv = REPO / "configs/presets/csv.yaml"
    first = casebook(
        "fit", "--config", str(config), "--config", str(csv), env=cli_env, cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert (root / "checkpoints" / "last.ckpt").exists()
    metrics_csv = (root / "csv" / "version_0" / "metrics.csv").read_text()
    for column in (
        "grad/global_norm",
        "grad_norm/net.0",
        "grad/autoclip_threshold",
        "skew/loss_gap",
        "activation_dead/net.1",
    ):
        assert column in metrics_csv

    # a rerun in the same directory, resuming from last.ckpt, neither fails on the saved config nor restarts
    again = casebook(
        "fit",
        "--config",
        str(config),
        "--config",
        str(csv),
        "--trainer.max_epochs=3",
        "--ckpt_path",
        "last",
        env=cli_env,
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Restoring states from the checkpoint path" in again.stdout + again.stderr
    assert (root / "checkpoints" / "epoch=2-step=12.ckpt").exists()

    tested = casebook(
        "test",
        "--config",
        str(config),
        "--config",
        str(csv),
        "--ckpt_path",
        "last",
        env=cli_env,
        cwd=tmp_path,
    )
    assert tested.returncode == 0, tested.stderr[-2000:]
    metrics = json.loads((root / "test_metrics.json").read_text())
    assert list(metrics) == ["test/loss"]
    assert isinstance(metrics["test/loss"], float)


def test_wandb_is_the_default_logger_and_runs_offline_without_credentials(
    cli_env, tmp_path, tiny_config
):
    config, root = tiny_config
    env = {k: v for k, v in cli_env.items() if not k.startswith("WANDB_")}
    env["HOME"] = str(tmp_path)  # no ~/.netrc, no stored key
    result = casebook(
        "fit", "--config", str(config), "--trainer.max_epochs=1", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert list((root / "wandb").glob("offline-run-*")), (
        "expected an offline W&B run under default_root_dir"
    )


def test_testing_in_the_fits_folder_keeps_the_fits_config(cli_env, tmp_path, tiny_config):
    config, root = tiny_config
    fit = casebook(
        "fit", "--config", str(config), "--trainer.max_epochs=1", env=cli_env, cwd=tmp_path
    )
    assert fit.returncode == 0, fit.stderr[-2000:]
    tested = casebook(
        "test",
        "--config",
        str(config),
        "--trainer.limit_test_batches=1",
        "--ckpt_path",
        "last",
        env=cli_env,
        cwd=tmp_path,
    )
    assert tested.returncode == 0, tested.stderr[-2000:]
    trained = yaml.safe_load((root / "config.yaml").read_text())
    assert trained["trainer"]["max_epochs"] == 1
    assert trained["trainer"]["limit_test_batches"] is None  # the fit's, not overwritten by test's
    assert (
        yaml.safe_load((root / "config-test.yaml").read_text())["trainer"]["limit_test_batches"]
        == 1
    )


@pytest.mark.parametrize(
    ("environment", "netrc_host", "online"),
    [
        ({}, None, False),
        ({"WANDB_API_KEY": "k" * 40}, None, True),
        ({}, "api.wandb.ai", True),
        ({"WANDB_BASE_URL": "https://wandb.example.org"}, "wandb.example.org", True),
        ({"WANDB_BASE_URL": "https://wandb.example.org"}, "api.wandb.ai", False),
    ],
    ids=["nothing", "api-key", "netrc", "netrc-of-own-server", "netrc-of-another-server"],
)
def test_wandb_runs_offline_unless_an_api_key_is_where_wandb_looks(
    environment, netrc_host, online, monkeypatch, tmp_path
):
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    netrc_file = tmp_path / "netrc"
    if netrc_host:
        netrc_file.write_text(f"machine {netrc_host}\n  login user\n  password {'k' * 40}\n")
    monkeypatch.setenv("NETRC", str(netrc_file))
    wandb_offline_unless_logged_in()
    assert os.environ.get("WANDB_MODE") == (None if online else "offline")


def test_unknown_key_and_wrong_type_get_jsonargparse_errors(cli_env, tmp_path, tiny_config):
    config, _ = tiny_config
    unknown = casebook(
        "fit", "--config", str(config), "--model.no_such_option=1", env=cli_env, cwd=tmp_path
    )
    assert unknown.returncode != 0
    assert "no_such_option" in unknown.stderr
    wrong = casebook(
        "fit", "--config", str(config), "--trainer.max_epochs=many", env=cli_env, cwd=tmp_path
    )
    assert wrong.returncode != 0
    assert "max_epochs" in wrong.stderr and "many" in wrong.stderr
    assert "Traceback" not in unknown.stderr + wrong.stderr


@pytest.mark.parametrize(
    "option, key",
    [
        ("--model.head=bogus", "head"),
        ("--model.lr_schedule=bogus", "lr_schedule"),
        ("--data.video_decoder=bogus", "video_decoder"),
    ],
)
def test_a_choice_outside_its_literal_exits_2_naming_the_key_and_the_choices(capsys, option, key):
    # parsing fails before anything is built: in-process, no interpreter start
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", str(REPO / "configs/step_aligner.yaml"), option])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "Traceback" not in err
    lines = [line.strip() for line in err.splitlines()]
    named = lines.index(f'Parser key "{key}":')
    # `--model.head` is a name or a component: its Literal is one branch of a Union
    following = [line.removeprefix("- ") for line in lines[named + 1 : named + 8]]
    assert any(line.startswith("Expected a typing.Literal[") for line in following)
    assert any(line.endswith("value: bogus") for line in following)


def test_data_values_are_linked_to_the_model(cli_env, tmp_path, tiny_config):
    config, _ = tiny_config
    # TinyRegressor defaults to one input: the fit only runs if the data's 7 features reached the model
    run = casebook(
        "fit",
        "--config",
        str(config),
        "--config",
        str(REPO / "configs/presets/debug.yaml"),
        "--data.num_features=7",
        env=cli_env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_known_noise_is_silenced_by_its_exact_text_and_other_messages_still_show():
    import logging
    import warnings

    from lightning.pytorch import Trainer
    from lightning.pytorch.utilities._pytree import _tree_flatten
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    from casebook.cli import silence_known_noise

    shown = []
    handler = logging.Handler()
    handler.emit = lambda record: shown.append(record.getMessage())
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            silence_known_noise()
            _tree_flatten(1)  # Lightning builds torch's deprecated LeafSpec
            warnings.warn(
                "`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, stacklevel=1
            )
            Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
            rank_zero_info("a real message")
    finally:
        rank_zero.removeHandler(handler)
    # the same text from this module (not Lightning's pytree helper) still shows
    assert [str(w.message) for w in caught] == ["`isinstance(treespec, LeafSpec)` is deprecated"]
    assert not any("Tip:" in message for message in shown), shown
    assert "a real message" in shown and any("GPU available" in m for m in shown), shown


def test_a_bad_option_a_constructor_refuses_is_one_line_exit_2(capsys):
    """jsonargparse re-raises a constructor's ValueError inside "Does not validate against any of
    the Union subtypes" with the whole namespace; the user sees the constructor's own line."""
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", str(REPO / "configs/ppo_trader.yaml"), "--data.source", "csv"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2
    assert lines == ["casebook: error: source 'csv' needs --data.path (one file or a list)"]


def test_only_casebook_constructors_value_errors_count_as_bad_options():
    import datetime

    from casebook.cli import option_error
    from datamodules.trading.splits import Splits

    def wrapped(make):  # how jsonargparse re-raises what a class raised
        try:
            try:
                make()
            except ValueError:
                raise ValueError("Does not validate against any of the Union subtypes") from None
        except ValueError as error:
            return error

    ours = wrapped(lambda: Splits(mode="nonsense"))
    assert "splits.mode must be one of" in str(option_error(ours))
    assert option_error(wrapped(lambda: datetime.date(2020, 13, 1))) is None  # not casebook's
    assert option_error(wrapped(lambda: int("x"))) is None
    assert option_error(None) is None
