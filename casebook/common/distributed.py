"""One helper for the Python objects (random states, error-analysis rows, a datamodule's
environments) every DDP rank holds."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist


def gather_from_ranks(value: Any) -> list[Any]:
    """`value` of every DDP rank, in rank order (`[value]` in a single process). Every rank must
    call it together (a checkpoint save, an epoch end)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values
