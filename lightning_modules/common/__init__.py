"""What every task's LightningModule shares: weight-initialization schemes, normalization layers,
weight-decay parameter groups and learning-rate schedules (the README's "Training checklist
switches")."""

from lightning_modules.common.layers import Init, Norm, init_weights, make_norm
from lightning_modules.common.optim import (
    LeanAdamW,
    Optimization,
    Schedule,
    build_scheduler,
    clip_grad_norm,
    configure_adamw,
    decay_groups,
    lr_multiplier,
    time_budget_used,
)

__all__ = [
    "Init",
    "LeanAdamW",
    "Norm",
    "Optimization",
    "Schedule",
    "build_scheduler",
    "clip_grad_norm",
    "configure_adamw",
    "decay_groups",
    "init_weights",
    "lr_multiplier",
    "make_norm",
    "time_budget_used",
]
