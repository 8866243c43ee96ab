"""Shared test setup: offline always, tiny support task importable, quiet warnings."""

import os
import sys
from pathlib import Path

import lightning as L
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


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory) -> None:
    """Code run in the test process caches (tokenizers, corpora) under the session's temporary
    folder: never in the checkout's `.cache/casebook`, nor in a CASEBOOK_CACHE the outer shell
    sets. Tests that need a cache of their own set it."""
    os.environ["CASEBOOK_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def casebook_env(cache: Path, home: Path) -> dict:
    """Environment for running ``casebook`` in a subprocess: offline, support modules on the
    path, one OpenMP thread, ``cache`` as the cache (whatever CASEBOOK_CACHE the outer shell
    sets) and ``home`` as the home (no ~/.netrc, no user's W&B or matplotlib settings)."""
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), env.get("PYTHONPATH", "")])
    env["CASEBOOK_CACHE"] = str(cache)
    env["HOME"] = str(home)
    env["WANDB_MODE"] = "offline"
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture
def cli_env(tmp_path):
    """Environment for running ``casebook`` in a subprocess: offline, support task on the path,
    a private cache and home so nothing outside tmp_path is read or written."""
    return casebook_env(tmp_path / "cache", tmp_path / "home")


@pytest.fixture(scope="session")
def tiny_speech_env(tmp_path_factory) -> dict:
    """``cli_env`` for a whole session, its cache holding a tiny synthesized speech corpus that
    ``--data.corpus.num_train_sentences=12 --data.corpus.num_val_sentences=4
    --data.corpus.num_test_sentences=4`` selects (seconds to make; the default corpus takes minutes), with one and with two training
    readings per sentence (the speech configs ask for two)."""
    from datamodules.speech.tts_corpus import TtsCorpusConfig, generate_tts_corpus

    cache = tmp_path_factory.mktemp("speech-cache")
    corpus = {"num_train_sentences": 12, "num_val_sentences": 4, "num_test_sentences": 4}
    for readings in (1, 2):
        generate_tts_corpus(TtsCorpusConfig(**corpus, train_readings_per_sentence=readings), cache)
    return casebook_env(cache, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def tiny_speech_teacher(tmp_path_factory) -> Path:
    """A randomly initialized tiny (4-layer) speech teacher exported as `casebook fit` exports
    one, for `--model.teacher` of the student."""
    from lightning_modules.speech import Wav2Vec2CTCRecipe

    torch.manual_seed(0)
    from tiny_speech import TINY_NETWORK

    teacher = Wav2Vec2CTCRecipe(network=TINY_NETWORK)
    return teacher.export(tmp_path_factory.mktemp("teacher") / "hf")


@pytest.fixture
def fit(tmp_path):
    """``fit(model, datamodule, callbacks=(), **trainer_options)``: one quiet CPU epoch without
    logger, checkpoints or validation, under tmp_path; any Trainer option overrides these."""

    def run(model, datamodule, callbacks=(), **trainer_options) -> L.Trainer:
        defaults = {
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 0,
            "max_epochs": 1,
            "default_root_dir": tmp_path,
        }
        trainer = L.Trainer(callbacks=list(callbacks), **(defaults | trainer_options))
        trainer.fit(model, datamodule)
        return trainer

    return run
