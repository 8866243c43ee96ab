"""The doctor's report: one ``CheckResult`` row per check, a table for the terminal, JSON for files."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "skip")
COLUMNS = ("check", "status", "measured", "expected", "note")  # the table's, left to right


@dataclass
class CheckResult:
    """One row of the table; ``values`` holds the raw numbers behind ``measured``, for the JSON."""

    check: str
    status: Status
    measured: str = ""
    expected: str = ""
    note: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    def judged(self, status: Status, note: str) -> CheckResult:
        """This row with its verdict: the same measurement, another status and note."""
        return dataclasses.replace(self, status=status, note=note)


@dataclass
class DoctorReport:
    model: str
    datamodule: str
    rows: list[CheckResult]

    @property
    def failed(self) -> bool:
        return any(row.status == "fail" for row in self.rows)

    def table(self) -> str:
        """``check | status | measured | expected | note``, columns padded but the last."""
        cells = [list(COLUMNS)] + [[getattr(row, c) for c in COLUMNS] for row in self.rows]
        padded = COLUMNS[:-1]
        widths = [max(len(line[i]) for line in cells) for i in range(len(padded))]
        text = [
            " | ".join([*(cell.ljust(w) for cell, w in zip(line, widths)), line[-1]]).rstrip()
            for line in cells
        ]
        text.insert(1, "-+-".join("-" * w for w in [*widths, 4]))
        return "\n".join(text)

    def summary(self) -> str:
        return ", ".join(
            f"{sum(row.status == status for row in self.rows)} {status}" for status in STATUSES
        )

    def as_json(self) -> dict:
        return {
            "model": self.model,
            "datamodule": self.datamodule,
            "failed": self.failed,
            "checks": [strict_json(dataclasses.asdict(row)) for row in self.rows],
        }


def strict_json(value: Any) -> Any:
    """NaN and infinities as strings ("inf"), which strict JSON readers accept."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    return value
