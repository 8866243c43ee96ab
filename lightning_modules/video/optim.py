"""The optimizer schedule both video modules use: linear warm-up, then cosine decay to zero."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(optimizer: Optimizer, warmup_steps: int, total_steps: float) -> LambdaLR:
    """Per-step multiplier: 0 -> 1 over `warmup_steps`, then cosine to 0 at `total_steps`
    (constant after warm-up when the run has no known length, `total_steps` infinite)."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if not math.isfinite(total_steps) or total_steps <= warmup_steps:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, multiplier)
