import io
import os
import random
import signal
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny_task import TinyDataModule, TinyRegressor

from callbacks.exact_resume import ExactResume


def draws(device: str = "cpu") -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3, device=device).tolist()


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(
                not torch.cuda.is_available(),
                reason="no CUDA device: the CUDA generators' save and restore is untested",
            ),
        ),
    ],
)
def test_random_state_round_trips_through_a_weights_only_checkpoint(device):
    if device == "cuda":
        torch.cuda.init()  # the CUDA generators are saved once CUDA is initialized
    saved = io.BytesIO()
    state = ExactResume().state_dict()
    assert device == "cpu" or "cuda" in state["random_states"][0]
    torch.save(state, saved)
    expected = draws(device)
    for seed in (1, 2):  # whatever ran in between (manual_seed reseeds the CUDA generators too)
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)

    saved.seek(0)
    resumed = ExactResume()
    resumed.load_state_dict(torch.load(saved, weights_only=True))
    fit_loop = SimpleNamespace(_combined_loader_states_to_load=[], restarting=False)
    resumed.on_train_start(SimpleNamespace(global_rank=0, fit_loop=fit_loop), None)
    assert draws(device) == expected


class Interrupt(Callback):
    def __init__(self, how: str) -> None:
        self.how = how

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 1:
            if self.how == "SIGTERM":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise RuntimeError("a bug inside the step")


@pytest.mark.parametrize("how", ["SIGTERM", "RuntimeError"])
def test_only_sigterm_while_training_writes_last_ckpt(how, tmp_path):
    trainer = L.Trainer(
        max_epochs=1,
        callbacks=[
            ModelCheckpoint(dirpath=tmp_path, save_last=True),
            ExactResume(),
            Interrupt(how),
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(SystemExit if how == "SIGTERM" else RuntimeError):
        trainer.fit(TinyRegressor(feature_dim=4), TinyDataModule())
    last = tmp_path / "last.ckpt"
    assert last.exists() == (how == "SIGTERM")
    if how == "SIGTERM":  # after batch 1: two batches done
        assert torch.load(last, weights_only=True)["global_step"] == 2
