"""What every benchmark shares: machine facts, the JSON results file, a `casebook` command run in
process, and a Trainer stripped of everything but the loop (tables:
`casebook.common.tables.markdown_table`)."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import platform
import warnings
from pathlib import Path

import lightning as L
import torch

from casebook.hardware import cpu, cpu_line  # noqa: F401 (the benchmarks import cpu_line here)

RESULTS_DIR = Path(__file__).parent / "results"


def load_average() -> tuple[float, float, float]:
    """1-, 5- and 15-minute load averages: other workers share these cores."""
    return tuple(round(x, 2) for x in os.getloadavg())


def machine() -> dict:
    """Where and when a run happened, printed and saved with every result."""
    model, flags = cpu()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": model,
        "isa": list(flags),
        "load_average": load_average(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_results(name: str, payload: dict) -> Path:
    """bench/results/<name>.json (git-ignored), overwritten each run."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def casebook_cli(args: list[str], **options):
    """One `casebook` command (`args` as typed after `casebook`) in this process, the same code as
    the console script, its printing kept out of the benchmark's; the CLI object (its trainer,
    model, datamodule). `options`: LightningCLI's, e.g. run=False."""
    from casebook.cli import CasebookCLI

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # LightningCLI warns that the benchmark's own sys.argv is there too; `args` is what it reads
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return CasebookCLI(args=args, **options)


def quiet_trainer(**options) -> L.Trainer:
    """A one-process CPU Trainer with no logger, checkpoints, progress bar, model summary or sanity
    check (each is overridable in `options`), so a timing measures the loop and its callbacks."""
    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return L.Trainer(**{**defaults, **options})
