"""Result tables reach W&B even when a numeric column has blank cells (a baseline row with no
drawdown): wandb.Table refuses a column mixing numbers and strings."""

from types import SimpleNamespace

import wandb
from lightning.pytorch.loggers import WandbLogger

from callbacks.tables import log_table, wandb_rows

ROWS = [
    {"strategy": "agent", "sharpe": 1.5, "turnover": 0.1},
    {"strategy": "rule", "sharpe": 1.2, "turnover": ""},
]


def test_blank_cells_of_numeric_columns_become_none():
    rows = wandb_rows(ROWS, ["strategy", "sharpe", "turnover"])
    assert rows == [["agent", 1.5, 0.1], ["rule", 1.2, None]]
    wandb.Table(columns=["strategy", "sharpe", "turnover"], data=rows)  # accepted


def test_log_table_with_an_offline_wandb_logger(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), is_global_zero=True, loggers=[logger])
    try:
        path = log_table(trainer, "test/backtest", ROWS)
    finally:
        wandb.finish()
    assert path.read_text().splitlines()[2] == "rule,1.2,"
