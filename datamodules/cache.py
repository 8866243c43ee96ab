"""Where generated data lives: outside git, reused across runs."""

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """`$CASEBOOK_CACHE` if set, else `.cache/casebook` under the current directory (git-ignored)."""
    root = os.environ.get("CASEBOOK_CACHE")
    return Path(root) if root else Path.cwd() / ".cache" / "casebook"
