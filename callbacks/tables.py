"""Small tables a person reads after a run (the worst cases of an error analysis): written as CSV and
Markdown under ``<default_root_dir>/reports`` and logged to W&B as a table."""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger


def markdown_table(rows: list[dict]) -> str:
    """`rows` (dicts with the same keys) as a Markdown table; floats with 4 significant digits."""
    if not rows:
        return "(no rows)\n"
    columns = list(rows[0])
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def log_table(trainer: Trainer, key: str, rows: list[dict]) -> Path:
    """Write ``rows`` to ``<default_root_dir>/reports/<key>.csv`` and ``.md`` (``/`` in the key
    becomes ``-``), log them to W&B when a WandbLogger is attached, and return the CSV's path.
    Rank 0 writes; the other ranks only get the path."""
    directory = Path(trainer.default_root_dir) / "reports"
    path = directory / f"{key.replace('/', '-')}.csv"
    if trainer.is_global_zero:
        directory.mkdir(parents=True, exist_ok=True)
        columns = list(rows[0]) if rows else []
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        path.with_suffix(".md").write_text(markdown_table(rows))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and rows:
                logger.log_table(key=key, columns=columns, data=wandb_rows(rows, columns))
    return path


def wandb_rows(rows: list[dict], columns: list[str]) -> list[list]:
    """Rows as W&B wants them: a column holding numbers holds None where a row has no number
    (a Markdown table's blank ""), or wandb.Table refuses the mixed column."""
    numeric = {c for c in columns if any(isinstance(r.get(c), (int, float)) for r in rows)}
    return [
        [
            None if c in numeric and not isinstance(r.get(c), (int, float)) else r.get(c)
            for c in columns
        ]
        for r in rows
    ]
