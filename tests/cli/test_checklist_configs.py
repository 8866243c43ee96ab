"""Each task's checklist overlay (configs/checklist/) and the BatchNorm ablation layer on their
task config, instantiate, and hand every switch they set to the model, data and trainer."""

from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import BackboneFinetuning, EMAWeightAveraging
from torch import nn

from casebook.cli import CasebookCLI

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = {  # overlay: its task config, and what instantiating it needs besides
    "checklist/ppo_trader.yaml": ("ppo_trader.yaml", []),
    "checklist/speech_teacher.yaml": ("speech_teacher.yaml", []),
    "checklist/clip_pretrainer.yaml": ("clip_pretrainer.yaml", []),
    "checklist/step_aligner.yaml": ("step_aligner.yaml", ["--model.pretrained=null"]),
    "ablations/ppo_batchnorm.yaml": ("ppo_trader.yaml", []),
}


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """The video datamodule trains and caches its tokenizer: in a temp dir, once per module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CASEBOOK_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_every_overlay_is_tested():
    shipped = {
        str(p.relative_to(REPO / "configs")) for p in (REPO / "configs").glob("checklist/*.yaml")
    }
    assert shipped | {"ablations/ppo_batchnorm.yaml"} == set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_layers_on_its_task_config_and_its_switches_take_effect(overlay, tmp_path):
    task, needs = OVERLAYS[overlay]
    cli = CasebookCLI(
        args=[
            "--config", str(REPO / "configs" / task),
            "--config", str(REPO / "configs" / overlay),
            *needs,
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false",
        ],
        run=False,
    )  # fmt: skip
    settings = yaml.safe_load((REPO / "configs" / overlay).read_text())
    for key, value in settings.get("model", {}).get("init_args", {}).items():
        assert contains(cli.model.hparams[key], value), key
    for key, value in settings.get("data", {}).get("init_args", {}).items():
        assert contains(cli.datamodule.hparams[key], value), key
    trainer = cli.trainer
    if "accumulate_grad_batches" in settings["trainer"]:
        assert trainer.accumulate_grad_batches == settings["trainer"]["accumulate_grad_batches"]
    kinds = [type(c) for c in trainer.callbacks]
    task_callbacks = yaml.safe_load((REPO / "configs" / task).read_text())["trainer"]["callbacks"]
    added = [c["class_path"].rsplit(".", 1)[1] for c in settings["trainer"].get("callbacks+", [])]
    # appended to the task's callbacks (callbacks+), not replacing them
    assert len(kinds) >= len(task_callbacks) + len(added)
    assert [k.__name__ for k in kinds if k.__name__ in added] == added
    if overlay.startswith("checklist/"):
        assert EMAWeightAveraging in kinds
    if overlay == "checklist/step_aligner.yaml":
        assert BackboneFinetuning in kinds and isinstance(cli.model.backbone, nn.Module)
    if overlay == "ablations/ppo_batchnorm.yaml":
        assert any(isinstance(m, nn.BatchNorm1d) for m in cli.model.policy.modules())
        assert not any(
            isinstance(m, nn.GroupNorm | nn.LayerNorm) for m in cli.model.policy.modules()
        )


def contains(actual, expected) -> bool:
    """`expected` (an overlay's setting) holds in `actual`; nested dicts (a component's
    init_args, a dataclass group) may hold more keys than the overlay sets."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(k in actual and contains(actual[k], v) for k, v in expected.items())
    return actual == expected
