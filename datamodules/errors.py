from casebook.common.errors import DataError  # noqa: F401  (moved; the lead removes this re-export)
