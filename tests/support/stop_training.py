"""A test-support callback that interrupts training as a cluster or a user would."""

import os
import signal

from lightning.pytorch import Callback


class StopAt(Callback):
    """Sends `signal` (SIGTERM by default, SIGKILL for a killed process) to this process when
    training batch `batch` (0-based) of epoch `epoch` starts: SIGTERM lets Lightning finish
    that batch, SIGKILL ends the process before it."""

    def __init__(self, epoch: int, batch: int, signal: str = "SIGTERM") -> None:
        super().__init__()
        self.epoch, self.batch, self.signal = epoch, batch, signal

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), getattr(signal, self.signal))


class StopInValidation(Callback):
    """Sends SIGTERM to this process when the first batch of the sanity check (`sanity_check`)
    or of the first validation after training began starts."""

    def __init__(self, sanity_check: bool = False) -> None:
        super().__init__()
        self.sanity_check, self.sent = sanity_check, False

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not self.sent and trainer.sanity_checking == self.sanity_check:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


class SignalAtStep(Callback):
    """Sends `signal` to this process once, when the first training batch that reaches optimizer
    step `step` ends (SIGUSR1: what SLURM sends before a job's time limit)."""

    def __init__(self, step: int, signal: str = "SIGUSR1") -> None:
        super().__init__()
        self.step, self.signal, self.sent = step, signal, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self.sent and trainer.global_step >= self.step:
            self.sent = True
            os.kill(os.getpid(), getattr(signal, self.signal))
