"""Hyper-parameters that a checkpoint can hold and `torch.load(weights_only=True)` can read.

`save_hyperparameters()` records constructor arguments as given. From LightningCLI they are
plain dicts and lists; from Python they may be dataclass instances (`Splits(...)`) or classes
(`policy=TemporalConvPolicy`), which a checkpoint would pickle as code references that a safe
load refuses. `plain_hyperparameters` turns them into the CLI's own form, and `from_plain`
reads that form back, so a module built either way saves a checkpoint either way can load.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any


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
