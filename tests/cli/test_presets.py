"""Every task config layers with every preset, as the README promises."""

from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from casebook.cli import CasebookCLI

REPO = Path(__file__).resolve().parents[2]
TASKS = ["ppo_trader.yaml"]
PRESETS = sorted(p.name for p in (REPO / "configs" / "presets").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("task", TASKS)
def test_task_config_layers_with_preset(task, preset, tmp_path):
    cli = CasebookCLI(
        args=[
            "--config", str(REPO / "configs" / task), "--config", str(REPO / "configs" / "presets" / preset),
            f"--trainer.default_root_dir={tmp_path}",
        ],
        run=False,
    )  # fmt: skip
    trainer = cli.trainer
    assert Path(trainer.checkpoint_callback.dirpath) == tmp_path / "checkpoints"
    if preset == "csv.yaml":
        assert isinstance(trainer.logger, CSVLogger) and Path(trainer.logger.save_dir) == tmp_path
    if preset == "wandb.yaml":
        assert isinstance(trainer.logger, WandbLogger) and Path(trainer.logger.save_dir) == tmp_path
    if preset == "ddp_cpu.yaml":
        assert trainer.num_devices == 2
