"""Result tables reach W&B even when a numeric column has blank cells (a baseline row with no
drawdown): wandb.Table refuses a column mixing numbers and strings."""

from types import SimpleNamespace

import wandb
from lightning.pytorch.loggers import WandbLogger

from casebook.common.tables import log_table, markdown_table, wandb_rows

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
        logged = dict(logger.experiment.summary["test/backtest"])
    finally:
        wandb.finish()
    assert path.read_text().splitlines()[2] == "rule,1.2,"
    assert logged["_type"] == "table-file" and logged["nrows"] == 2 and logged["ncols"] == 3


def test_markdown_table_pads_columns_and_formats_numbers_one_way():
    rows = [
        {"strategy": "agent | ensemble", "sharpe": 1.23456, "equity": 12345.6},
        {"strategy": "rule", "sharpe": float("nan")},
    ]
    lines = markdown_table(rows).splitlines()
    assert lines[0].split("|")[1:-1] == [" strategy          ", " sharpe ", " equity "]
    assert set(lines[1]) == {"|", " ", "-"}
    assert lines[2] == r"| agent \| ensemble | 1.235  | 12,346 |"
    assert lines[3] == "| rule              | n/a    |        |"  # a missing cell is blank
    assert len({len(line) for line in lines}) == 1


def test_markdown_table_takes_columns_and_says_when_it_has_no_rows():
    assert markdown_table([{"a": 1, "b": 2}], ["b"]).splitlines()[2] == "| 2   |"
    assert markdown_table([]) == "(no rows)"
    assert markdown_table([], ["a"]).splitlines() == ["| a   |", "| --- |"]


def test_log_table_writes_the_markdown_twin(tmp_path):
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), is_global_zero=True, loggers=[])
    path = log_table(trainer, "test/worst", ROWS)
    assert path == tmp_path / "reports" / "test-worst.csv"
    assert path.with_suffix(".md").read_text() == markdown_table(ROWS) + "\n"
