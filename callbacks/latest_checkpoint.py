"""LatestCheckpoint: `last.ckpt` rewritten at every save point, whatever the monitored metric did.

Lightning 2.6's ModelCheckpoint rewrites `last.ckpt` only when it saved a top-k file at that
step, so with a monitor set (every casebook recipe) `last.ckpt` is the best epoch, and a killed run
would resume from there rather than from where it stopped. This is a ModelCheckpoint without a
monitor whose single file is `last.ckpt`, next to the monitored one that keeps the best; its own
class gives it a state key of its own (two plain ModelCheckpoints with equal settings clash).
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint


class LatestCheckpoint(ModelCheckpoint):
    """ModelCheckpoint(filename="last", monitor=None, save_top_k=1), overwritten in place."""

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_train_steps: int | None = None,
        every_n_epochs: int | None = None,
        train_time_interval=None,
        save_on_train_epoch_end: bool | None = None,
    ) -> None:
        """
        Args:
            dirpath: folder of `last.ckpt` (casebook links it to `<default_root_dir>/checkpoints`).
            every_n_train_steps: also save every this many training steps (mid-epoch resumes).
            every_n_epochs: save every this many epochs (default: every validation / epoch end).
            train_time_interval: also save at this wall-clock interval (a `datetime.timedelta`).
            save_on_train_epoch_end: save at the end of the training epoch instead of validation.
        """
        super().__init__(
            dirpath=dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            every_n_train_steps=every_n_train_steps,
            every_n_epochs=every_n_epochs,
            train_time_interval=train_time_interval,
            save_on_train_epoch_end=save_on_train_epoch_end,
            enable_version_counter=False,  # overwrite, never last-v1.ckpt
        )
