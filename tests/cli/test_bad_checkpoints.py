"""Bad `--ckpt_path` (and `--model.pretrained`) files get one line naming the file and the
problem, not a traceback; none is unpickled beyond tensors and plain containers."""

from pathlib import Path

import lightning as L
import pytest
import torch
from tiny_task import TinyDataModule, TinyRegressor
from unsafe_checkpoint import unsafe_checkpoint

from casebook.cli import main

REPO = Path(__file__).resolve().parents[2]
CSV = str(REPO / "configs/presets/csv.yaml")


def run(capsys, *arguments: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(arguments))
    return done.value.code, capsys.readouterr().err.strip()


@pytest.fixture
def tiny(tmp_path):
    """Test arguments for the tiny regressor, and one good checkpoint of it."""
    arguments = [
        "--model=tiny_task.TinyRegressor", "--data=tiny_task.TinyDataModule",
        "--data.num_features=3", "--config", CSV, f"--trainer.default_root_dir={tmp_path / 'run'}",
    ]  # fmt: skip
    trainer = L.Trainer(
        max_steps=1, logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    trainer.fit(TinyRegressor(feature_dim=3), TinyDataModule(num_features=3))
    good = tmp_path / "good.ckpt"
    trainer.save_checkpoint(good)
    return arguments, good


def test_missing_checkpoint_is_one_line(capsys, tiny, tmp_path):
    arguments, _ = tiny
    code, err = run(capsys, "test", *arguments, f"--ckpt_path={tmp_path / 'nope.ckpt'}")
    assert code == 2 and err.count("\n") == 0 and "nope.ckpt: no such checkpoint file" in err


def test_truncated_checkpoint_is_one_line(capsys, tiny, tmp_path):
    arguments, good = tiny
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(good.read_bytes()[:500])
    code, err = run(capsys, "test", *arguments, f"--ckpt_path={broken}")
    assert code == 2 and err.count("\n") == 0 and "broken.ckpt: not a readable checkpoint" in err


def test_random_bytes_are_an_unreadable_checkpoint_not_pickled_objects(capsys, tiny, tmp_path):
    arguments, _ = tiny
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(bytes(range(256)) * 8)
    code, err = run(capsys, "test", *arguments, f"--ckpt_path={noise}")
    assert code == 2 and err.count("\n") == 0
    assert "noise.ckpt: not a readable checkpoint" in err and "pickled" not in err


def test_another_tasks_checkpoint_is_one_line_naming_both_models(capsys, tiny, tmp_path):
    arguments, good = tiny
    other = tmp_path / "other.ckpt"
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["hyper_parameters"] = {"_class_path": "lightning_modules.trading.PPOTrader"}
    torch.save(checkpoint, other)
    code, err = run(capsys, "fit", *arguments, f"--ckpt_path={other}")
    assert code == 2 and err.count("\n") == 0
    assert "a checkpoint of PPOTrader, but this config's model is TinyRegressor" in err


def test_a_checkpoint_of_other_sizes_is_one_line(capsys, tiny):
    arguments, good = tiny
    code, err = run(capsys, "test", *arguments, "--model.hidden=16", f"--ckpt_path={good}")
    assert code == 2 and err.count("\n") == 0
    assert "does not fit this config's model" in err and "net.0.weight" in err


def test_a_good_checkpoint_still_loads(capsys, tiny):
    arguments, good = tiny
    main(["test", *arguments, f"--ckpt_path={good}"])
    assert (Path(arguments[-1].split("=", 1)[1]) / "test_metrics.json").exists()


def test_the_unsafe_checkpoint_of_these_tests_runs_code_when_unpickled(tmp_path):
    # so that "the marker does not exist" below means the loads ran no code
    unsafe = unsafe_checkpoint(tmp_path / "unsafe.ckpt", tmp_path / "ran")
    torch.load(unsafe, weights_only=False)
    assert (tmp_path / "ran").is_dir()


def test_a_checkpoint_holding_pickled_objects_is_refused_in_one_line(capsys, tiny, tmp_path):
    arguments, good = tiny
    marker = tmp_path / "ran"
    unsafe = unsafe_checkpoint(
        tmp_path / "unsafe.ckpt", marker, torch.load(good, weights_only=True)
    )
    code, err = run(capsys, "test", *arguments, f"--ckpt_path={unsafe}")
    assert code == 2 and err.count("\n") == 0
    assert f"--ckpt_path {unsafe}: holds pickled objects" in err and "weights_only=True" in err
    assert not marker.exists()


def test_pretrained_encoders_holding_pickled_objects_are_refused_in_one_line(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.setenv("CASEBOOK_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "ran"
    unsafe = unsafe_checkpoint(tmp_path / "encoders.ckpt", marker)
    code, err = run(
        capsys, "fit", "--config", str(REPO / "configs/step_aligner.yaml"), "--config", CSV,
        f"--model.pretrained={unsafe}", f"--trainer.default_root_dir={tmp_path / 'run'}",
        "--data.num_train_videos=2", "--data.num_val_videos=1", "--data.num_test_videos=1",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 0
    assert f"{unsafe}: holds pickled objects" in err and "weights_only=True" in err
    assert not marker.exists()
