"""Sources: the arch data sets, CSV parsing with one-line errors, the synthetic generator."""

import numpy as np
import pytest
import torch

from datamodules.errors import DataError
from datamodules.trading import load_arch, net_log_returns, read_price_csv, synthetic_bars

GOOD_ROWS = [
    "2019-01-02,10,11,9,10.5,100",
    "2019-01-03,10.5,11,10,10.8,120",
    "2019-01-04,10.8,11.5,10.6,11.2,90",
]


def write_csv(tmp_path, rows, header="date,open,high,low,close,volume"):
    path = tmp_path / "prices.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize("name", ["sp500", "nasdaq"])
def test_arch_sources_load_twenty_years_of_daily_bars(name):
    bars = load_arch(name)
    assert bars.name == name
    assert len(bars) == 5031
    assert str(bars.dates[0].date()) == "1999-01-04"
    assert str(bars.dates[-1].date()) == "2018-12-31"
    assert (bars.close > 0).all() and (bars.high >= bars.low).all()


def test_csv_reads_columns_in_any_case_and_order_ignoring_others(tmp_path):
    rows = [",".join([r.split(",")[i] for i in (5, 4, 0, 3, 2, 1)]) + ",x" for r in GOOD_ROWS]
    path = write_csv(tmp_path, rows, header="VOLUME,Close,Date,low,High,open,comment")
    bars = read_price_csv(path)
    assert bars.name == "prices"
    np.testing.assert_allclose(bars.close, [10.5, 10.8, 11.2])
    np.testing.assert_allclose(bars.volume, [100, 120, 90])
    assert [str(d.date()) for d in bars.dates] == ["2019-01-02", "2019-01-03", "2019-01-04"]


@pytest.mark.parametrize(
    ("row_2", "expected"),
    [
        ("2019-01-03,10.5,11,10,-3.2,120", "row 3: close is not positive (-3.2)"),
        ("2019-01-03,10.5,11,10,abc,120", "row 3: close is not a number ('abc')"),
        ("2019-01-03,10.5,11,10,,120", "row 3: close is missing"),
        ("2019-01-03,10.5,11,10,NaN,120", "row 3: close is NaN"),
        (",,,,,", "row 3: date is missing"),
        ("2019-13-45,10.5,11,10,10.8,120", "row 3: date is not a date ('2019-13-45')"),
        ("2019-01-02,10.5,11,10,10.8,120", "row 3: duplicate date 2019-01-02 (same as row 2)"),
        ("2019-01-01,10.5,11,10,10.8,120", "row 3: date 2019-01-01 is earlier than row 2"),
        ("2019-01-03,10.5,9,10,10.8,120", "row 3: high (9) is below low (10)"),
        ("2019-01-03,10.5,11,10,10.8,-5", "row 3: volume is negative (-5)"),
    ],
)
def test_csv_error_names_file_row_and_problem(tmp_path, row_2, expected):
    path = write_csv(tmp_path, [GOOD_ROWS[0], row_2, GOOD_ROWS[2]])
    with pytest.raises(DataError) as caught:
        read_price_csv(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {expected}")


def test_csv_missing_file_and_missing_column_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match=r"^.*nowhere\.csv: file not found$"):
        read_price_csv(tmp_path / "nowhere.csv")
    path = write_csv(tmp_path, GOOD_ROWS, header="date,open,high,low,close,vol")
    with pytest.raises(DataError, match=r"prices\.csv: missing column 'volume' \(found: "):
        read_price_csv(path)


def test_synthetic_generator_is_deterministic_per_seed():
    first = synthetic_bars("s", days=300, seed=7, signal_strength=0.2)
    again = synthetic_bars("s", days=300, seed=7, signal_strength=0.2)
    other = synthetic_bars("s", days=300, seed=8, signal_strength=0.2)
    np.testing.assert_array_equal(first.close, again.close)
    np.testing.assert_array_equal(first.volume, again.volume)
    assert not np.allclose(first.close, other.close)


def _follow_today_rule(bars):
    """Hold sign(today's intraday return) from the next open: (rule, buy-and-hold) log returns."""
    intraday = torch.as_tensor(np.log(bars.close / bars.open))
    gap = torch.as_tensor(np.log(bars.open[1:] / bars.close[:-1]))
    position = torch.sign(intraday[:-1])
    hold = torch.ones_like(position)

    def run(pos):
        previous = torch.cat([torch.zeros(1, dtype=pos.dtype), pos[:-1]])
        return net_log_returns(previous, pos, gap, intraday[1:], cost_bps=0.0)

    return run(position), run(hold)


@pytest.mark.parametrize("seed", [0, 1])
def test_signal_strength_plants_a_component_tradable_at_the_next_open(seed):
    planted, hold = _follow_today_rule(synthetic_bars("s", 3000, seed, signal_strength=0.3))
    t_stat = planted.mean() / planted.std() * len(planted) ** 0.5
    assert t_stat > 5
    assert planted.sum() > hold.sum() + 3

    none, _ = _follow_today_rule(synthetic_bars("s", 3000, seed, signal_strength=0.0))
    assert abs(none.mean() / none.std() * len(none) ** 0.5) < 2
