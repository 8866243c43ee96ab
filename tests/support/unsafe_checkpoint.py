"""A checkpoint that runs code when it is unpickled, as a file from the internet could.

Unpickling its `Payload` calls ``os.mkdir(marker)``: a test loads it through a casebook path and
asserts both the one-line refusal and that ``marker`` does not exist, i.e. no code ran.
"""

import os
from pathlib import Path

import torch


class Payload:
    """Any object but a tensor or a plain container; its pickle calls os.mkdir(marker)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def unsafe_checkpoint(path: Path, marker: Path, checkpoint: dict | None = None) -> Path:
    """`checkpoint` (default: an empty Lightning one) with a Payload under "extra", saved to `path`."""
    torch.save({**(checkpoint or {"state_dict": {}}), "extra": Payload(marker)}, path)
    return path
