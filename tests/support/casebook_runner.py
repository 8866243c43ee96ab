"""Run the ``casebook`` command as a user would: a fresh interpreter, its output captured."""

import subprocess
import sys


def casebook(*args: str, env: dict, cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m casebook <args>`` in ``cwd`` with ``env``; the result, whatever its exit code."""
    return subprocess.run(
        [sys.executable, "-m", "casebook", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
