"""TrainValidSkew: how far validation lags training, and how steadily each metric moves.

For each configured name ``x`` it reads ``train/x`` and ``val/x`` at the end of every training epoch
(validation has already run by then) and logs

- ``skew/x_gap``   = train/x - val/x
- ``skew/x_ratio`` = val/x / train/x
- ``consistency/train_x_change`` and ``consistency/val_x_change``: the change since the previous
  epoch ("training consistency": variation between epochs should be gradual).

With ``patience`` set it warns, or stops the run, once |gap| has grown for that many epochs in a row.

    trainer:
      callbacks:
        - class_path: callbacks.TrainValidSkew
          init_args: {metrics: [loss, sharpe], patience: 5, action: warn}
"""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn


class TrainValidSkew(Callback):
    """Logs the train/valid gap and ratio and the epoch-to-epoch change of tracked metrics;
    optionally alerts or stops when the gap keeps growing."""

    def __init__(
        self,
        metrics: list[str] | None = None,
        patience: int | None = None,
        action: Literal["warn", "stop"] = "warn",
        min_growth: float = 0.0,
    ) -> None:
        """
        Args:
            metrics: names ``x`` whose ``train/x`` and ``val/x`` are compared (default: ``[loss]``).
            patience: act once |gap| has grown for this many consecutive validated epochs; None never acts.
            action: ``warn`` logs a warning once; ``stop`` also ends training.
            min_growth: a growth of |gap| smaller than this does not count.
        """
        super().__init__()
        self.metrics = list(metrics or ["loss"])
        self.patience = patience
        self.action = action
        self.min_growth = min_growth
        self.last_gap: dict[str, float] = {}
        self.growth_streak: dict[str, int] = {}
        self.previous: dict[str, float] = {}
        self.alerted: set[str] = set()
        self._validated_epoch: int | None = None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        available = trainer.callback_metrics
        validated = self._validated_epoch == trainer.current_epoch
        logs: dict[str, float] = {}
        for name in self.metrics:
            values = {}
            for stage in ("train", "val"):
                key = f"{stage}/{name}"
                if key in available and (stage == "train" or validated):
                    values[stage] = float(available[key])
                    if key in self.previous:
                        logs[f"consistency/{stage}_{name}_change"] = (
                            values[stage] - self.previous[key]
                        )
                    self.previous[key] = values[stage]
            if len(values) < 2:
                continue
            gap = values["train"] - values["val"]
            logs[f"skew/{name}_gap"] = gap
            if values["train"] != 0.0:
                logs[f"skew/{name}_ratio"] = values["val"] / values["train"]
            self._track_growth(trainer, name, gap)
        if logs:
            pl_module.log_dict(logs, on_step=False, on_epoch=True, sync_dist=True)

    def _track_growth(self, trainer: Trainer, name: str, gap: float) -> None:
        previous = self.last_gap.get(name)
        self.last_gap[name] = gap
        if previous is None:
            return
        grew = abs(gap) - abs(previous) > self.min_growth
        self.growth_streak[name] = self.growth_streak.get(name, 0) + 1 if grew else 0
        if self.patience is None or self.growth_streak[name] < self.patience:
            return
        message = (
            f"TrainValidSkew: |train/{name} - val/{name}| has grown for {self.growth_streak[name]} "
            f"epochs in a row (now {abs(gap):.4g}) at epoch {trainer.current_epoch}"
        )
        if self.action == "stop":
            rank_zero_warn(message + "; stopping.")
            trainer.should_stop = True
        elif name not in self.alerted:
            rank_zero_warn(message)
        self.alerted.add(name)

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_gap": self.last_gap,
            "growth_streak": self.growth_streak,
            "previous": self.previous,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_gap = dict(state_dict["last_gap"])
        self.growth_streak = dict(state_dict["growth_streak"])
        self.previous = dict(state_dict["previous"])
