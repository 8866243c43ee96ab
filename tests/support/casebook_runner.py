"""Run the ``casebook`` command as a user would: a fresh interpreter, its output captured.

``python -m casebook_runner '<JSON list of argument lists>'`` runs several casebook commands in
order in one interpreter, as a shell would one after the other: on a busy 2-core machine each new
interpreter spends ~15 s importing torch, Lightning and transformers. It is a module, not
``python -c``, because Lightning's DDP launcher starts the other ranks by re-running
``python -m <main module> <arguments>``; every rank then runs the same commands in step.
"""

import json
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


def casebook_commands(
    *commands: list[str], env: dict, cwd, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Each command (``["fit", "--config", ...]``) in order in one interpreter; after each one
    that returns, ``finished: <index>`` is printed. The result, whatever its exit code."""
    return subprocess.run(
        [sys.executable, "-m", "casebook_runner", json.dumps(commands)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


if __name__ == "__main__":
    from casebook.cli import main

    for index, arguments in enumerate(json.loads(sys.argv[1])):
        main(arguments)
        # one write: both DDP ranks share this stdout, and print() writes the text and the
        # newline separately, which another rank's line can split
        sys.stdout.write(f"finished: {index}\n")
        sys.stdout.flush()
