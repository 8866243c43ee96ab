"""Figures a person would rather look at than read: saved as PNG and logged to W&B."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: runs on clusters and CI without a display

from lightning.pytorch import Trainer  # noqa: E402
from lightning.pytorch.loggers import WandbLogger  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def log_figure(trainer: Trainer, key: str, figure: Figure) -> Path:
    """Save ``figure`` as ``<default_root_dir>/figures/<key>.png`` (``/`` in the key becomes ``-``),
    log it to W&B when a WandbLogger is attached, and return the PNG's path. Build figures with
    ``matplotlib.figure.Figure`` (not pyplot), so nothing global holds on to them."""
    directory = Path(trainer.default_root_dir) / "figures"
    path = directory / f"{key.replace('/', '-')}.png"
    if trainer.is_global_zero:
        directory.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110, bbox_inches="tight")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
    return path
