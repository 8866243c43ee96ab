"""The one exception type for bad input data.

Its message is the whole story in one line: the file (or id), the row, and what is wrong,
e.g. ``prices.csv: row 17: close is not positive (-3.2)``. The CLI prints it without a trace.
"""


class DataError(ValueError):
    """Bad input data: a missing file, a malformed row, a segment past the video's end, ..."""
