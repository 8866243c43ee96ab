"""ExactResume: what a checkpoint needs, beyond what Lightning saves, to resume a run exactly.

Lightning 2.6 checkpoints the model, optimizers, schedulers, loop progress, callbacks, the
datamodule's `state_dict` and a training DataLoader that has one. It does not checkpoint the
global random generators (it seeds them once, `seed_everything`), so a resumed run draws other
dropout masks, sampled actions and minibatch orders than the uninterrupted one. And on SIGTERM
(a cluster's preemption or time limit, `kill`) its signal handler stops the loop at the next batch
boundary (`SIGTERMException`) without saving anything. This callback adds both:

- the global random state (Python, NumPy, torch CPU and CUDA) in every checkpoint, every DDP rank's
  own, restored when training resumes;
- on SIGTERM while training, the run's `last.ckpt` (ModelCheckpoint's, so `--ckpt_path last`
  resumes from it). A SIGTERM during validation or the sanity check is held until that pass
  ends, and acted on at the next batch boundary of training: Lightning would stop in the middle
  of the pass, where no checkpoint resumes (a resumed run skips the rest of that validation, so
  the best checkpoint and early stopping would never see it). A validation longer than the
  cluster's grace period after SIGTERM ends with its SIGKILL, and the previous `last.ckpt` stands.

The data order is the datamodules' part (`datamodules.resume`: loaders with a state); this
callback only works around a Lightning bug that drops that state (`load_forgotten_loader_states`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from casebook.common.distributed import gather_from_ranks


def random_state() -> dict[str, Any]:
    """This process's global random state, as tensors and plain lists (checkpoints load with
    `weights_only=True`, which refuses NumPy arrays)."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    state = {
        "python": [version, list(python_state), python_gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict[str, Any]) -> None:
    version, python_state, python_gauss = state["python"]
    random.setstate((version, tuple(python_state), python_gauss))
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_forgotten_loader_states(trainer: Trainer) -> None:
    """Load the training loaders' checkpointed state if Lightning dropped it, and rebuild the
    epoch's iterator as its own resume path does.

    Lightning 2.6 drops it when `configure_optimizers` reads `trainer.estimated_stepping_batches`
    (as warmup schedules do): that builds the loaders before the loops are restored, and the loop
    then never loads their state (Lightning-AI/pytorch-lightning#20550).
    """
    fit_loop = trainer.fit_loop
    pending = getattr(fit_loop, "_combined_loader_states_to_load", None)
    if not pending or not fit_loop.restarting or fit_loop._data_fetcher is None:
        return
    fit_loop._load_combined_loader_states()
    iter(fit_loop._data_fetcher)


def last_checkpoint_path(trainer: Trainer) -> str | None:
    """Where `--ckpt_path last` looks: the `last.ckpt` of a ModelCheckpoint with `save_last`, or of
    one whose own file is `last` (casebook's `latest` callback, which saves without a monitor)."""
    for checkpoint in trainer.checkpoint_callbacks:
        last = checkpoint.CHECKPOINT_NAME_LAST
        if checkpoint.save_last:
            # Recorded before saving, so the resumed callback overwrites this file (no last-v1).
            path = checkpoint.last_model_path or checkpoint.format_checkpoint_name({}, last)
            checkpoint.last_model_path = path
            return path
        if checkpoint.filename == last and checkpoint.monitor is None:
            return checkpoint.format_checkpoint_name({})
    return None


class ExactResume(Callback):
    """Checkpoints the global random state and saves `last.ckpt` on SIGTERM (see the module docstring)."""

    def __init__(self, save_on_sigterm: bool = True, restore_random_state: bool = True) -> None:
        """
        Args:
            save_on_sigterm: on SIGTERM while training, write ModelCheckpoint's last.ckpt before exiting.
            restore_random_state: checkpoint the global random generators and restore them on resume.
        """
        super().__init__()
        self.save_on_sigterm = save_on_sigterm
        self.restore_random_state = restore_random_state
        self._saved_states: list[dict[str, Any]] | None = None
        self._held_sigterm = False

    # ------------------------------------------------------------------ random state
    def state_dict(self) -> dict[str, Any]:
        if not self.restore_random_state:
            return {}
        # Every rank saves a checkpoint together (rank 0 writes it), so each rank's state is gathered.
        return {"random_states": gather_from_ranks(random_state())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._saved_states = state_dict.get("random_states")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        load_forgotten_loader_states(trainer)
        # Here, not at load time: Lightning has built the resumed epoch's iterator (and run the
        # sanity check) and is about to fetch the batch the checkpointed run fetched next.
        states, self._saved_states = self._saved_states, None
        if not self.restore_random_state or not states:
            return
        if trainer.global_rank < len(states):
            set_random_state(states[trainer.global_rank])
        else:
            rank_zero_warn(
                f"the checkpoint holds the random state of {len(states)} processes, this run has "
                f"{trainer.world_size}: ranks beyond them keep their seed_everything state"
            )

    # ------------------------------------------------------------------ SIGTERM
    def on_validation_batch_end(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        # Lightning's evaluation loop raises SIGTERMException right after this hook; holding the
        # flag (Lightning has no public setter) lets the pass finish. Every DDP rank holds its own.
        if (
            self.save_on_sigterm
            and trainer.state.fn == TrainerFn.FITTING
            and trainer.received_sigterm
        ):
            trainer._signal_connector.received_sigterm = False
            self._held_sigterm = True

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._held_sigterm:  # the training loop raises at its next batch boundary
            trainer._signal_connector.received_sigterm = True
            self._held_sigterm = False

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        # Only SIGTERM: Lightning raises it between batches, where the state is whole. Any other
        # exception may come from inside a step, with the weights half updated. A SIGTERM during
        # validation is held until the pass ends (above), unless it lands between that hook and
        # Lightning's check: no checkpoint resumes from mid-pass, so the last one stands.
        if (
            not self.save_on_sigterm
            or not isinstance(exception, SIGTERMException)
            or trainer.state.fn != TrainerFn.FITTING
            or trainer.sanity_checking
            or trainer.validating
        ):
            return
        path = last_checkpoint_path(trainer)
        if path is None:
            rank_zero_warn("SIGTERM: no ModelCheckpoint writes last.ckpt, so nothing was saved")
            return
        if trainer.is_global_zero and Path(path).is_symlink():  # save_last="link"
            Path(path).unlink()
        trainer.save_checkpoint(path, weights_only=False)
        rank_zero_info(f"SIGTERM: saved {path}; `--ckpt_path last` resumes from it")
