"""Shared test setup: offline always, tiny support task importable, quiet warnings."""

import os
import sys
from pathlib import Path

import pytest
import torch

SUPPORT = Path(__file__).parent / "support"
REPO = Path(__file__).parent.parent
sys.path.insert(0, str(SUPPORT))

# Nothing at test time touches the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Tests use tiny tensors: one intra-op thread avoids thread start-up and spin costs, and keeps
# timings sane when the machine is shared (two threads on two busy cores can be 10x slower).
torch.set_num_threads(1)


@pytest.fixture
def cli_env(tmp_path):
    """Environment for running ``casebook`` in a subprocess: offline, support task on the path,
    a private cache and home so nothing outside tmp_path is read or written."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), env.get("PYTHONPATH", "")])
    env["CASEBOOK_CACHE"] = env.get("CASEBOOK_CACHE", str(tmp_path / "cache"))
    env["WANDB_MODE"] = "offline"
    env["OMP_NUM_THREADS"] = "1"
    return env
