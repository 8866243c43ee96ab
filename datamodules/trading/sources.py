"""Where daily OHLCV bars come from: the `arch` package, CSV files, or the planted-edge generator
(synthetic.py).

Every source returns `PriceBars` that passed the same checks (dates strictly increasing, prices
positive, volume non-negative, high >= low), so nothing downstream re-validates. A bad CSV raises
`DataError` with one line naming the file, the row and the problem; "row N" is the line number in
the file, the header being row 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from lightning.pytorch.utilities import rank_zero_warn

from casebook.common.errors import DataError

ARCH_SOURCES = ("sp500", "nasdaq")
SOURCES = (*ARCH_SOURCES, "csv", "synthetic")
CSV_COLUMNS = ("date", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")


@dataclass(frozen=True)
class PriceBars:
    """Daily bars of one asset; arrays are float64 and aligned with `dates`."""

    name: str
    dates: pd.DatetimeIndex
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    origin: str = ""  # where the bars came from, for error messages: a CSV path, "arch sp500"
    # Other series observed alongside (a lead-lag market's leader, --data.context_path): their
    # features join this asset's observation, aligned by date; they are not traded.
    context: tuple[PriceBars, ...] = ()

    def __len__(self) -> int:
        return len(self.dates)


Problem = tuple[np.ndarray, Callable[[int], str]]


def raise_first_problem(label: str, rows: np.ndarray, problems: list[Problem]) -> None:
    """Raise for the flagged row nearest the top of the file; on a tie the problem listed first
    wins.

    Each problem is (mask over rows, function of the row's index returning its description);
    `rows` is each index's row in the file.
    """
    best: tuple[int, int, int] | None = None  # (file row, problem, index)
    for order, (mask, _) in enumerate(problems):
        hits = np.flatnonzero(mask)
        if not len(hits):
            continue
        numbers = rows[hits]
        top = int(np.argmin(numbers))
        if best is None or numbers[top] < best[0]:
            best = (int(numbers[top]), order, int(hits[top]))
    if best is not None:
        row, order, i = best
        raise DataError(f"{label}: row {row}: {problems[order][1](i)}")


def check_bars(
    bars: PriceBars,
    label: str,
    first_row: int = 1,
    rows: np.ndarray | None = None,
    derived: tuple[str, ...] = (),
) -> PriceBars:
    """Raise `DataError` on the first row that is NaN, non-positive, high < low or out of order.

    `rows`: each bar's row in the file when the file's order was not the bars' (newest first).
    `derived`: price columns copied from the close (a closes-only file), checked as the close.
    """
    rows = first_row + np.arange(len(bars)) if rows is None else rows
    checked = [c for c in PRICE_COLUMNS if c not in derived]
    problems: list[Problem] = []
    for column in (*checked, "volume"):
        values = getattr(bars, column)
        problems.append((np.isnan(values), lambda i, c=column: f"{c} is NaN"))
        problems.append((np.isinf(values), lambda i, c=column: f"{c} is not finite"))
    raise_first_problem(label, rows, problems)

    problems = []
    for column in checked:
        values = getattr(bars, column)
        problems.append(
            (values <= 0, lambda i, c=column, v=values: f"{c} is not positive ({v[i]:g})")
        )
    problems.append((bars.volume < 0, lambda i: f"volume is negative ({bars.volume[i]:g})"))
    problems.append(
        (bars.high < bars.low, lambda i: f"high ({bars.high[i]:g}) is below low ({bars.low[i]:g})")
    )
    dates = bars.dates.values
    same, earlier = np.zeros(len(dates), dtype=bool), np.zeros(len(dates), dtype=bool)
    same[1:] = dates[1:] == dates[:-1]
    earlier[1:] = dates[1:] < dates[:-1]

    def day(i: int) -> str:
        return str(bars.dates[i].date())

    problems.append((same, lambda i: f"duplicate date {day(i)} (same as row {rows[i - 1]})"))
    problems.append(
        (
            earlier,
            lambda i: (
                f"date {day(i)} is earlier than row {rows[i - 1]} ({day(i - 1)}); sort rows by date"
            ),
        )
    )
    raise_first_problem(label, rows, problems)
    return bars


def load_arch(name: str) -> PriceBars:
    """S&P 500 or NASDAQ Composite daily OHLCV 1999-2018 as shipped in `arch.data`."""
    if name == "sp500":
        from arch.data import sp500 as dataset
    elif name == "nasdaq":
        from arch.data import nasdaq as dataset
    else:
        raise ValueError(f"unknown arch data set {name!r}; expected one of {ARCH_SOURCES}")
    frame = dataset.load()
    bars = PriceBars(
        name=name,
        dates=pd.DatetimeIndex(frame.index).as_unit("ns"),
        **{c: frame[c.capitalize()].to_numpy(dtype=np.float64) for c in CSV_COLUMNS[1:]},
        origin=f"arch {name}",
    )
    return check_bars(bars, f"arch {name}", first_row=1)


def _parse_dates(text: pd.Series) -> pd.Series:
    """ISO 8601 first; if that leaves rows unparsed, let pandas infer one format from the data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dates = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        if dates.isna().any():
            inferred = pd.to_datetime(text, errors="coerce", utc=True)
            if inferred.notna().sum() > dates.notna().sum():
                dates = inferred
    return dates.dt.tz_localize(None).dt.normalize()


def read_price_csv(
    path: str | Path, traded: bool = True, execution: str = "next_open"
) -> PriceBars:
    """One asset from a CSV with columns date, open, high, low, close, volume (any case, any order).

    Volume may be absent (taken as 0: its feature is flat), and so may open, high and low
    together (each taken as the close); either is warned about. Other columns are ignored. The
    asset is named after the file stem. Rows run oldest first, or newest first throughout (as
    some brokers' and exchanges' exports do; they are reversed); any other order is an error
    naming the first row out of place. `traded` and `execution` (the datamodule's) only shape
    the warning's advice: fills at the next open are a day late on closes alone.
    """
    label = str(path)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{label}: file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{label}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DataError(f"{label}: not a readable CSV ({reason})") from None
    columns: dict[str, str] = {}
    for original in frame.columns:
        key = str(original).strip().lower()
        if key in CSV_COLUMNS and key in columns:
            raise DataError(f"{label}: column '{key}' appears twice")
        columns[key] = original
    found = ", ".join(str(c) for c in frame.columns)
    # Full bars, bars without volume (FX, many indices), or closes alone (index levels): what is
    # absent is filled, and said; a partial open/high/low set is a typo, refused.
    bars_given = [c for c in ("open", "high", "low") if c in columns]
    required = ["date", "close", *(("open", "high", "low") if bars_given else ())]
    for name in required:
        if name not in columns:
            raise DataError(f"{label}: missing column '{name}' (found: {found})")
    present = [c for c in CSV_COLUMNS if c in columns]
    absent = [c for c in CSV_COLUMNS if c not in columns]
    frame = frame[[columns[c] for c in present]].fillna("")
    frame.columns = present
    frame = frame.apply(lambda column: column.str.strip())
    # A blank line at the very end is an editor artefact, not a NaN row.
    filled = (frame != "").any(axis=1).to_numpy()
    frame = frame.iloc[: (np.flatnonzero(filled)[-1] + 1) if filled.any() else 0]
    if len(frame) == 0:
        raise DataError(f"{label}: no data rows")

    rows = 2 + np.arange(len(frame))  # the header is row 1
    problems: list[Problem] = []
    raw_dates = frame["date"].to_numpy()
    dates = _parse_dates(frame["date"])
    problems.append((raw_dates == "", lambda i: "date is missing"))
    problems.append(
        (
            dates.isna().to_numpy() & (raw_dates != ""),
            lambda i: f"date is not a date ({raw_dates[i]!r})",
        )
    )
    numbers = {}
    for column in present[1:]:
        raw = frame[column]
        text = raw.to_numpy()
        numbers[column] = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        empty = text == ""
        literal_nan = raw.str.lower().isin(["nan", "na", "n/a", "null", "none"]).to_numpy()
        problems.append((empty, lambda i, c=column: f"{c} is missing"))
        problems.append((literal_nan, lambda i, c=column: f"{c} is NaN"))
        problems.append(
            (
                np.isnan(numbers[column]) & ~empty & ~literal_nan,
                lambda i, c=column, t=text: f"{c} is not a number ({t[i]!r})",
            )
        )
    raise_first_problem(label, rows, problems)
    for name in absent:  # copies of the close (checked as the close), or no volume
        numbers[name] = numbers["close"].copy() if name != "volume" else np.zeros(len(frame))
    order = dates.to_numpy()
    if len(order) > 1 and order[0] > order[-1]:  # newest first, as some exports are
        later = np.flatnonzero(order[1:] > order[:-1])
        if len(later):
            i = int(later[0]) + 1
            day = [str(pd.Timestamp(order[j]).date()) for j in (i, i - 1)]
            raise DataError(
                f"{label}: row {rows[i]}: date {day[0]} is later than row {rows[i - 1]}"
                f" ({day[1]}) in a file that runs newest first; sort rows by date"
            )
        # (a repeated date is then named as a duplicate by check_bars)
        rows, dates = rows[::-1], dates[::-1]
        numbers = {column: values[::-1].copy() for column, values in numbers.items()}
    bars = PriceBars(
        name=path.stem, dates=pd.DatetimeIndex(dates).as_unit("ns"), **numbers, origin=label
    )
    bars = check_bars(bars, label, rows=rows, derived=tuple(c for c in absent if c != "volume"))
    if absent:
        uses = ["the close as open, high and low"] if not bars_given else []
        uses += ["volume 0 (a flat volume feature)"] if "volume" in absent else []
        advice = ""
        if not bars_given and traded and execution == "next_open":
            advice = (
                ": a fill at the next open is then one at the next close, a day late;"
                " --data.execution close fills at the decision day's close"
            )
        rank_zero_warn(
            f"{label}: no {'/'.join(absent)} column (found: {found}); using"
            f" {' and '.join(uses)}{advice}"
        )
    return bars
