"""Tables: the one Markdown renderer (run reports, benchmarks, `make demo`), and small tables a
person reads after a run (the worst cases of an error analysis) written as CSV and Markdown under
``<default_root_dir>/reports`` and logged to W&B as a table."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger


def table_cell(value: Any) -> str:
    """One cell: NaN as "n/a", a float of 1,000 or more as a whole number with thousands
    separators, other floats with 4 significant digits, None as blank, the rest as `str` ("|"
    escaped). A caller that wants another format passes the formatted string."""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """`rows` as a GitHub Markdown table whose columns are padded to line up in a terminal too.

    Columns default to the first row's keys; a row without one of them has a blank cell there.
    No rows and no columns: "(no rows)". No trailing newline."""
    if columns is None:
        if not rows:
            return "(no rows)"
        columns = list(rows[0])
    grid = [[table_cell(c) for c in columns]]
    grid += [[table_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(3, *(len(line[i]) for line in grid)) for i in range(len(columns))]
    render = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([render(grid[0]), render(["-" * w for w in widths]), *map(render, grid[1:])])


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
        path.with_suffix(".md").write_text(markdown_table(rows) + "\n")
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
