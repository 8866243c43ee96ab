"""Sources: the arch data sets and CSV parsing with one-line errors (the planted-edge family:
test_synthetic.py)."""

import warnings

import numpy as np
import pytest

from casebook.common.errors import DataError
from datamodules.trading import load_arch, read_price_csv

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


def test_csv_newest_first_is_read_oldest_first_and_errors_name_the_files_row(tmp_path):
    ascending = read_price_csv(write_csv(tmp_path, GOOD_ROWS))
    newest_first = read_price_csv(write_csv(tmp_path, GOOD_ROWS[::-1]))
    assert list(newest_first.dates) == list(ascending.dates)
    for column in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(newest_first, column), getattr(ascending, column))
    # file rows 2-4 hold 01-04, 01-03, 01-02; both bad rows are flagged, the file's upper one wins
    bad = [GOOD_ROWS[2], "2019-01-03,10.5,9,10,10.8,120", "2019-01-02,10,11,9,10.5,-1"]
    with pytest.raises(DataError, match=r"prices\.csv: row 3: high \(9\) is below low \(10\)$"):
        read_price_csv(write_csv(tmp_path, bad))
    repeated = [GOOD_ROWS[2], GOOD_ROWS[1], GOOD_ROWS[1], GOOD_ROWS[0]]
    with pytest.raises(DataError, match=r"row 3: duplicate date 2019-01-03 \(same as row 4\)$"):
        read_price_csv(write_csv(tmp_path, repeated))
    stray = ["2019-01-07,11,12,10,11.5,80", GOOD_ROWS[1], GOOD_ROWS[2], GOOD_ROWS[0]]
    with pytest.raises(DataError, match=r"row 4: date 2019-01-04 is later than row 3 \(2019"):
        read_price_csv(write_csv(tmp_path, stray))
    # not monotonic either way: an error naming the first row out of place
    mixed = [GOOD_ROWS[1], GOOD_ROWS[0], GOOD_ROWS[2]]
    with pytest.raises(DataError, match=r"row 3: date 2019-01-02 is earlier than row 2 "):
        read_price_csv(write_csv(tmp_path, mixed))


def test_csv_missing_file_and_missing_column_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match=r"^.*nowhere\.csv: file not found$"):
        read_price_csv(tmp_path / "nowhere.csv")
    # open/low given without high: a typo, not a close-only file
    path = write_csv(tmp_path, GOOD_ROWS, header="date,open,hgh,low,close,volume")
    with pytest.raises(DataError, match=r"prices\.csv: missing column 'high' \(found: date, op"):
        read_price_csv(path)
    path = write_csv(
        tmp_path, [r.split(",", 1)[1] for r in GOOD_ROWS], "open,high,low,close,volume"
    )
    with pytest.raises(DataError, match=r"prices\.csv: missing column 'date' \(found: "):
        read_price_csv(path)


def test_csv_without_volume_or_with_closes_alone_is_filled_and_said(tmp_path):
    full = read_price_csv(write_csv(tmp_path, GOOD_ROWS))
    no_volume = [r.rsplit(",", 1)[0] for r in GOOD_ROWS]
    with pytest.warns(
        UserWarning, match=r"prices\.csv: no volume column \(found: Date, .*volume 0"
    ):
        bars = read_price_csv(write_csv(tmp_path, no_volume, header="Date,Open,High,Low,Close"))
    np.testing.assert_array_equal(bars.volume, [0, 0, 0])
    np.testing.assert_array_equal(bars.high, full.high)
    closes = [f"{r.split(',')[0]},{r.split(',')[4]}" for r in GOOD_ROWS]
    with pytest.warns(
        UserWarning,
        match=r"no open/high/low/volume column .*close as open, high.*--data\.execution close",
    ):
        bars = read_price_csv(write_csv(tmp_path, closes, header="date,close"))
    for column in ("open", "high", "low"):
        np.testing.assert_array_equal(getattr(bars, column), full.close)
    # the advice only where it applies: fills at the close already, or a series not traded
    for options in ({"execution": "close"}, {"traded": False}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read_price_csv(write_csv(tmp_path, closes, header="date,close"), **options)
        assert len(caught) == 1 and "close as open" in str(caught[0].message)
        assert "--data.execution" not in str(caught[0].message)
    # a trailing blank line is still an editor's, with columns filled
    path = write_csv(tmp_path, closes, header="date,close")
    path.write_text(path.read_text() + "\n")
    with pytest.warns(UserWarning, match="no open/high/low/volume column"):
        assert len(read_price_csv(path)) == 3
    # a bad close is named as the close (not as its copies), in the file's row, and no warning
    # precedes the error
    for bad, expected in (("abc", r"not a number \('abc'\)"), ("-1", r"not positive \(-1\)"),
                          ("inf", "not finite")):  # fmt: skip
        closes[1] = f"2019-01-03,{bad}"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(DataError, match=rf"row 3: close is {expected}$"):
                read_price_csv(write_csv(tmp_path, closes, header="date,close"))
