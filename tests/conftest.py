"""Shared test setup: offline always, tiny support task importable, quiet warnings."""

import os
import sys
from pathlib import Path

import pytest

SUPPORT = Path(__file__).parent / "support"
REPO = Path(__file__).parent.parent
sys.path.insert(0, str(SUPPORT))

# Nothing at test time touches the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture
def cli_env(tmp_path):
    """Environment for running ``casebook`` in a subprocess: offline, support task on the path,
    a private cache and home so nothing outside tmp_path is read or written."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), env.get("PYTHONPATH", "")])
    env["CASEBOOK_CACHE"] = env.get("CASEBOOK_CACHE", str(tmp_path / "cache"))
    env["WANDB_MODE"] = "offline"
    return env
