"""Every task config layers with every preset, as the README promises."""

from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from casebook.cli import CasebookCLI

REPO = Path(__file__).resolve().parents[2]
TASKS = {  # task: its config files, and what instantiating it needs besides
    "ppo_trader": (["ppo_trader.yaml"], []),
    "a2c_trader": (["ppo_trader.yaml", "a2c_trader.yaml"], []),
    "speech_teacher": (["speech_teacher.yaml"], []),
    "speech_pretrain": (["speech_pretrain.yaml"], []),
    "speech_student": (["speech_student.yaml"], ["--model.teacher={tiny_speech_teacher}"]),
    "clip_pretrainer": (["clip_pretrainer.yaml"], []),
    "step_aligner": (["step_aligner.yaml"], ["--model.pretrained=null"]),  # no pre-training run
}
PRESETS = sorted(p.name for p in (REPO / "configs" / "presets").glob("*.yaml"))


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """The video datamodule trains and caches its tokenizer: in a temp dir, once per module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CASEBOOK_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("task", TASKS)
def test_task_config_layers_with_preset(task, preset, tmp_path, request):
    configs, needs = TASKS[task]
    if any("{tiny_speech_teacher}" in a for a in needs):
        teacher = request.getfixturevalue("tiny_speech_teacher")
        needs = [a.format(tiny_speech_teacher=teacher) for a in needs]
    cli = CasebookCLI(
        args=[
            *(a for name in configs for a in ("--config", str(REPO / "configs" / name))),
            "--config", str(REPO / "configs" / "presets" / preset), *needs,
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
