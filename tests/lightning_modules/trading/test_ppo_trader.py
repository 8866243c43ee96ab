"""PPOTrader end to end: it learns a planted signal, it runs from the CLI, its results and
figures land where the contracts say, ensembles and bad checkpoints behave."""

import csv
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from casebook_runner import casebook

from datamodules.trading import MarketDataModule
from lightning_modules.trading import PPOTrader

REPO = Path(__file__).resolve().parents[3]
SYNTHETIC = dict(
    source="synthetic",
    synthetic_days=3000,
    train_end="2006-12-31",
    valid_end="2008-06-30",
    window=8,
    num_envs=32,
    episode_length=64,
    iterations_per_epoch=4,
)


def fit(algorithm: str, signal_strength: float, epochs: int, tmp_path) -> L.Trainer:
    L.seed_everything(0)
    data = MarketDataModule(signal_strength=signal_strength, **SYNTHETIC)
    model = PPOTrader(
        observation_shape=data.observation_shape,
        num_actions=data.num_actions,
        action_mode=data.action_mode,
        algorithm=algorithm,
        width=16,
        depth=2,
        rollout_steps=32,
        lr=2e-3,
        anneal_lr=False,
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, data)
    return trainer


def test_ppo_learns_planted_signal_beyond_buy_and_hold_and_random(tmp_path):
    metrics = fit("ppo", signal_strength=0.5, epochs=4, tmp_path=tmp_path).callback_metrics
    sharpe = metrics["val/sharpe"].item()
    assert sharpe > metrics["val/buy_and_hold_sharpe"].item() + 1.0
    assert sharpe > metrics["val/random_sharpe"].item() + 1.0
    assert sharpe > 1.5
    for name in (
        "policy_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "clip_fraction",
        "explained_variance",
        "episode_return",
    ):
        assert torch.isfinite(metrics[f"train/{name}"]), name
    assert (
        "train/sharpe" in metrics
    )  # the deterministic train-split backtest TrainValidSkew compares


def test_without_a_signal_there_is_nothing_to_learn(tmp_path):
    metrics = fit("ppo", signal_strength=0.0, epochs=2, tmp_path=tmp_path).callback_metrics
    assert metrics["val/sharpe"].item() < 1.5  # no planted edge: no honest agent shows a big one


def test_a2c_baseline_trains(tmp_path):
    metrics = fit("a2c", signal_strength=0.5, epochs=1, tmp_path=tmp_path).callback_metrics
    assert torch.isfinite(metrics["train/policy_loss"]) and "val/sharpe" in metrics


def test_cli_fit_test_ensemble_and_bad_input(cli_env, tmp_path):
    root = tmp_path / "run"
    common = [
        "--config", str(REPO / "configs/ppo_trader.yaml"),
        "--config", str(REPO / "configs/presets/csv.yaml"),
        f"--trainer.default_root_dir={root}",
        "--data.source=synthetic", "--data.synthetic_days=3000", "--data.train_end=2006-12-31",
        "--data.valid_end=2008-06-30", "--data.window=8", "--data.num_envs=8", "--data.episode_length=32",
        "--data.iterations_per_epoch=2", "--model.depth=2", "--model.rollout_steps=8",
    ]  # fmt: skip
    fitted = casebook("fit", *common, "--trainer.max_epochs=2", env=cli_env, cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    assert (root / "checkpoints" / "last.ckpt").exists()

    tested = casebook("test", *common, "--ckpt_path=best", env=cli_env, cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-3000:]
    metrics = json.loads((root / "test_metrics.json").read_text())
    for key in (
        "test/sharpe",
        "test/total_return",
        "test/max_drawdown",
        "test/buy_and_hold_sharpe",
        "test/buy_and_hold_total_return",
    ):
        assert isinstance(metrics[key], float), key
    assert all(key.startswith("test/") for key in metrics)
    assert (root / "figures" / "test-equity_synthetic.png").stat().st_size > 10_000
    # error analysis: the worst trades, worst first, as a table and a figure
    worst = list(csv.DictReader((root / "reports" / "test-worst_trades_synthetic.csv").open()))
    assert 0 < len(worst) <= 10
    returns = [float(row["return"]) for row in worst]
    assert returns == sorted(returns) and {row["side"] for row in worst} <= {"long", "short"}
    assert (root / "reports" / "test-worst_trades_synthetic.md").read_text().startswith("| entry")
    assert (root / "figures" / "test-worst_trades_synthetic.png").stat().st_size > 5_000

    # An ensemble of two copies of one checkpoint decides exactly as that checkpoint does.
    last = root / "checkpoints" / "last.ckpt"
    ensemble = casebook(
        "test", *common, "--ckpt_path=last", f"--model.ensemble_checkpoints=[{last},{last}]",
        "--model.ensemble_weighting=val_sharpe", env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    assert ensemble.returncode == 0, ensemble.stderr[-3000:]
    single = casebook("test", *common, "--ckpt_path=last", env=cli_env, cwd=tmp_path)
    assert single.returncode == 0
    ensemble_metrics = json.loads((root / "test_metrics.json").read_text())
    assert ensemble_metrics["test/sharpe"] == pytest.approx(metrics_of(single, root)["test/sharpe"])

    bogus = tmp_path / "bogus.ckpt"
    bogus.write_text("not a checkpoint")
    bad = casebook(
        "test",
        *common,
        "--ckpt_path=last",
        f"--model.ensemble_checkpoints=[{bogus}]",
        env=cli_env,
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert f"casebook: error: {bogus}: cannot read ensemble checkpoint" in bad.stderr
    assert "Traceback" not in bad.stderr


def metrics_of(result, root):
    return json.loads((root / "test_metrics.json").read_text())


def test_missing_csv_path_is_one_line_naming_the_path(cli_env, tmp_path):
    missing = tmp_path / "no_such_prices.csv"
    result = casebook(
        "fit", "--config", str(REPO / "configs/ppo_trader.yaml"), "--config", str(REPO / "configs/presets/csv.yaml"),
        f"--trainer.default_root_dir={tmp_path / 'run'}", "--data.source=csv", f"--data.path={missing}",
        env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    error_lines = [
        line for line in result.stderr.splitlines() if line.startswith("casebook: error:")
    ]
    assert len(error_lines) == 1 and str(missing) in error_lines[0]
    assert "Traceback" not in result.stderr
