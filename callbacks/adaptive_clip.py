"""AdaptiveGradClip: clip the gradient norm at a percentile of its own recent history (AutoClip).

Seetharaman et al. 2020, "AutoClip: Adaptive Gradient Clipping for Source Separation Networks".
Fixed-threshold clipping stays the Trainer's own ``gradient_clip_val``; this callback is for runs
where no fixed threshold is known in advance. Lightning has no adaptive clipper, hence this file.

    trainer:
      callbacks:
        - class_path: callbacks.AdaptiveGradClip
          init_args: {percentile: 10, history_size: 1000}
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.nn.utils import clip_grads_with_norm_, get_total_norm

from callbacks.grad_norm_monitor import log_to_loggers


class AdaptiveGradClip(Callback):
    """Clips the global gradient norm at the p-th percentile of the last ``history_size`` norms
    (the current one included) and logs the threshold and how often it clipped."""

    def __init__(
        self,
        percentile: float = 10.0,
        history_size: int = 1000,
        min_history: int = 1,
        norm_type: float = 2.0,
        log_every_n_steps: int = 50,
    ) -> None:
        """
        Args:
            percentile: clip at this percentile (0-100) of the recent gradient norms; AutoClip uses 10.
            history_size: how many recent norms the percentile is taken over.
            min_history: no clipping until this many norms have been seen.
            norm_type: the p of the p-norm.
            log_every_n_steps: the threshold and the clipped fraction are logged every N steps.
        """
        super().__init__()
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], not {percentile}")
        self.percentile = percentile
        self.history: deque[float] = deque(maxlen=history_size)
        self.min_history = max(1, min_history)
        self.norm_type = norm_type
        self.log_every_n_steps = max(1, log_every_n_steps)
        self.steps = 0
        self.clipped_steps = 0
        self.last_threshold: float | None = None

    @torch.no_grad()
    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        params = [p for p in pl_module.parameters() if p.grad is not None]
        if not params:
            return
        total = get_total_norm([p.grad for p in params], self.norm_type)
        if not torch.isfinite(total):
            return  # leave non-finite steps to GradNormMonitor; they must not poison the history
        self.history.append(float(total))
        self.steps += 1
        if len(self.history) < self.min_history:
            return
        threshold = float(torch.quantile(torch.tensor(list(self.history)), self.percentile / 100.0))
        self.last_threshold = threshold
        if float(total) > threshold:
            clip_grads_with_norm_(params, threshold, total)
            self.clipped_steps += 1
        if trainer.global_step % self.log_every_n_steps == 0:
            log_to_loggers(
                trainer,
                {
                    "grad/autoclip_threshold": threshold,
                    "grad/autoclip_clipped_fraction": self.clipped_steps / self.steps,
                },
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": list(self.history),
            "steps": self.steps,
            "clipped_steps": self.clipped_steps,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history.clear()
        self.history.extend(state_dict["history"])
        self.steps = state_dict["steps"]
        self.clipped_steps = state_dict["clipped_steps"]
