"""The one exception type for bad input data and missing prerequisites, and the one way to quote
another exception inside its message.

A `DataError`'s message is the whole story in one line: the file (or id), the row, and what is
wrong, e.g. ``prices.csv: row 17: close is not positive (-3.2)``. The CLI prints it without a
trace and exits with code 2.
"""


class DataError(ValueError):
    """Bad input data: a missing file, a malformed row, a segment past the video's end, ..."""


def first_line(error: BaseException) -> str:
    """The first non-blank line of `error`'s message, stripped, or its class name when the message
    is blank: what a one-line `DataError` quotes of a library's multi-line exception."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__
