"""``make demo``: each task's short run on its embedded default data, then its results table.

Every job is the same ``casebook fit`` / ``casebook test`` a user would type, in a subprocess;
the tables are read back from ``test_metrics.json`` and printed as they are, good or bad.

    python -m casebook.demo            # every task that is built
    python -m casebook.demo trading    # one task
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DemoJob:
    name: str
    description: str
    steps: list[list[str]]  # casebook argument lists, run in order
    root: str  # default_root_dir, where test_metrics.json lands
    rows: dict[str, str]  # table row label -> metric prefix ("" for the model itself)
    columns: dict[str, str]  # column label -> metric name
    note: str = ""
    pending: str | None = None  # issue number when the task is not built yet
    extra: list[str] = field(default_factory=list)


TRADING_ROOT = "runs/demo/ppo_trader"
JOBS = [
    DemoJob(
        name="trading",
        description="PPO trading agent, S&P 500 daily bars 1999-2018 (arch); test split 2016-2018",
        steps=[
            [
                "fit",
                "--config",
                "configs/ppo_trader.yaml",
                f"--trainer.default_root_dir={TRADING_ROOT}",
            ],
            [
                "test",
                "--config",
                "configs/ppo_trader.yaml",
                f"--trainer.default_root_dir={TRADING_ROOT}",
                "--ckpt_path=best",
            ],
        ],
        root=TRADING_ROOT,
        rows={
            "PPO agent": "",
            "buy and hold": "buy_and_hold_",
            "random policy (mean of 32)": "random_",
        },
        columns={
            "Sharpe": "sharpe",
            "total return": "total_return",
            "annual return": "annual_return",
            "max drawdown": "max_drawdown",
            "turnover/day": "turnover",
            "hit rate": "hit_rate",
        },
        note="Costs of 5 bp per unit of position change are included; the checkpoint is the best validation Sharpe.",
    ),
    DemoJob(
        name="speech",
        description="distilled wav2vec2 student on eSpeak NG speech",
        steps=[],
        root="",
        rows={},
        columns={},
        pending="issue 4",
    ),
    DemoJob(
        name="video",
        description="CLIP-style video step aligner on procedural videos",
        steps=[],
        root="",
        rows={},
        columns={},
        pending="issue 5",
    ),
]


def format_table(job: DemoJob, metrics: dict[str, float]) -> str:
    header = ["", *job.columns]
    lines = []
    for label, prefix in job.rows.items():
        cells = [label]
        for metric in job.columns.values():
            value = metrics.get(f"test/{prefix}{metric}")
            cells.append("—" if value is None else f"{value:.3f}")
        lines.append(cells)
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    render = lambda row: " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))  # noqa: E731
    return "\n".join([render(header), "-+-".join("-" * w for w in widths), *map(render, lines)])


def run(job: DemoJob) -> int:
    print(f"\n=== {job.name}: {job.description}", flush=True)
    if job.pending:
        print(f"    not built yet ({job.pending})")
        return 0
    started = time.time()
    for arguments in job.steps:
        print("$ casebook " + " ".join(arguments), flush=True)
        result = subprocess.run([sys.executable, "-m", "casebook", *arguments])
        if result.returncode != 0:
            print(
                f"    {job.name}: 'casebook {arguments[0]}' failed with exit code {result.returncode}"
            )
            return result.returncode
    metrics = json.loads((Path(job.root) / "test_metrics.json").read_text())
    print(f"\n{job.name} results (test split), {time.time() - started:.0f} s:")
    print(format_table(job, metrics))
    if job.note:
        print(job.note)
    print(
        f"All metrics: {Path(job.root) / 'test_metrics.json'}; figures: {Path(job.root) / 'figures'}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    wanted = set(argv if argv is not None else sys.argv[1:])
    status = 0
    for job in JOBS:
        if not wanted or job.name in wanted:
            status = run(job) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
