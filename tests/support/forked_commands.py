"""Many short ``casebook`` commands, each in a process of its own, for the price of one import.

``python -m forked_commands JOBS.json`` imports casebook and every task's packages once, then
forks one child per job (two at a time): the child enters the job's folder, sends its stdout and
stderr to the job's output file and runs ``casebook.cli.main(args)`` as ``python -m casebook``
would, exit handlers included. On a busy 2-core machine a fresh interpreter spends ~10 s of CPU
importing torch, Lightning and transformers; a fork spends none, and each command still starts
from a clean process state (warning registries, loggers, wandb). Whatever the imports print goes
to ``JOBS.json.imports``; the exit codes, in job order, go to stdout as JSON.

A job is ``{"args": [...], "cwd": folder, "output": file, "env": {name: value}}``.
"""

import atexit
import json
import os
import sys
import traceback
from pathlib import Path


def run_child(job: dict) -> None:
    """In the forked child: never returns."""
    code = 1
    try:
        output = os.open(job["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.environ.update(job.get("env", {}))
        os.chdir(job["cwd"])
        sys.argv = ["casebook", *job["args"]]  # as `python -m casebook ARGS` sees them
        from casebook.cli import main

        main()
        code = 0
    except SystemExit as exit:  # as the interpreter turns it into an exit status
        if exit.code is None or isinstance(exit.code, int):
            code = exit.code or 0
        else:
            print(exit.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # wandb's and logging's, as at a normal interpreter exit
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def run_jobs(jobs: list[dict], workers: int = 2) -> list[int]:
    codes: list[int | None] = [None] * len(jobs)
    running: dict[int, int] = {}
    pending = list(range(len(jobs)))
    while pending or running:
        while pending and len(running) < workers:
            index = pending.pop(0)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                run_child(jobs[index])
            running[pid] = index
        pid, status = os.wait()
        codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    return codes


def import_everything(log: Path) -> None:
    """The CLI and every task's modules, with whatever importing them prints sent to `log`."""
    saved = os.dup(1), os.dup(2)
    with open(log, "w") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            import wandb  # noqa: F401

            import casebook.cli  # noqa: F401
            import datamodules.speech  # noqa: F401
            import datamodules.trading  # noqa: F401
            import datamodules.video  # noqa: F401
            import lightning_modules.speech  # noqa: F401
            import lightning_modules.trading  # noqa: F401
            import lightning_modules.video  # noqa: F401
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)


if __name__ == "__main__":
    path = Path(sys.argv[1])
    import_everything(path.with_name(path.name + ".imports"))
    print(json.dumps(run_jobs(json.loads(path.read_text()))))
