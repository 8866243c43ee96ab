"""A one-line DataError quotes another exception by its first line (or its name when it has none)."""

from casebook.common.errors import DataError, first_line


def test_first_line_skips_blank_lines_and_strips():
    error = RuntimeError("\n  Error(s) in loading state_dict:  \n\tMissing key(s): ...")
    assert first_line(error) == "Error(s) in loading state_dict:"


def test_first_line_of_a_silent_exception_is_its_name():
    assert first_line(OSError()) == "OSError"
    assert first_line(EOFError("   \n")) == "EOFError"


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)
