"""Hyper-parameters that a checkpoint can hold and `torch.load(weights_only=True)` can read.

`save_hyperparameters()` records constructor arguments as given. From LightningCLI they are
plain dicts and lists; from Python they may be dataclass instances (`Splits(...)`) or classes
(`policy=TemporalConvPolicy`), which a checkpoint would pickle as code references that a safe
load refuses. `plain_hyperparameters` turns them into the CLI's own form, and `from_plain`
reads that form back, so a module built either way saves a checkpoint either way can load.
`load_checkpoint` is that safe load of a file a user names, with one-line errors.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pickle
from pathlib import Path
from typing import Any

import torch

from casebook.common.errors import DataError, first_line


def plain(value: Any) -> Any:
    """A dataclass as a dict, a class (or a partial of one) as {"class_path", "init_args"}."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, functools.partial) and isinstance(value.func, type):
        return {"class_path": _path(value.func), "init_args": plain(value.keywords)}
    if isinstance(value, type):
        return {"class_path": _path(value), "init_args": {}}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def plain_hyperparameters(module) -> None:
    """Rewrite `module.hparams` in place with `plain` (call after `save_hyperparameters`)."""
    for key in list(module.hparams):
        module.hparams[key] = plain(module.hparams[key])


def from_plain(value: Any, kind: type | None = None) -> Any:
    """The inverse for one argument: a dict of `kind` (a dataclass) back into it, a
    {"class_path", "init_args"} dict back into a partial of that class; anything else as is."""
    if isinstance(value, dict) and "class_path" in value:
        module, _, name = value["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return functools.partial(cls, **value.get("init_args", {}))
    if kind is not None and isinstance(value, dict):
        return kind(**value)
    return value


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def load_checkpoint(path: str | Path, option: str = "", allowed: tuple[type, ...] = ()) -> dict:
    """A Lightning checkpoint a user names, read with `torch.load(weights_only=True)` on the CPU:
    tensors and plain containers (and the `allowed` classes) only, so a file from the internet
    cannot run code when it is read. A missing or unreadable file, one holding pickled objects,
    or one without a state_dict is a DataError: ``<option> <path>: <what is wrong>``."""
    source = f"{option} {path}" if option else str(path)
    if not Path(path).is_file():
        raise DataError(f"{source}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(list(allowed)):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    # KeyError: the weights-only unpickler's memo, on bytes that are no pickle at all
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
        # the weights-only unpickler refused a GLOBAL (a class or function: pickled objects);
        # on bytes that are no pickle it names an "Unsupported operand" instead
        if "Weights only load failed" in str(error) and "global" in str(error).lower():
            problem = "holds pickled objects, not only tensors (loaded with weights_only=True)"
        elif "Weights only load failed" in str(error):  # bytes that are no pickle at all
            problem = "not a readable checkpoint (not a torch.save file, or damaged)"
        else:
            problem = f"not a readable checkpoint ({first_line(error)})"
        raise DataError(f"{source}: {problem}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise DataError(f"{source}: not a Lightning checkpoint (no state_dict)")
    return checkpoint
