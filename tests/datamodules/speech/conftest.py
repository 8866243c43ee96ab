"""A tiny synthesized corpus shared by the speech tests (20 utterances, generated once)."""

import pytest

from datamodules.speech.tts_corpus import TtsCorpusConfig, generate_tts_corpus

TINY = {"num_train_sentences": 12, "num_val_sentences": 4, "num_test_sentences": 4}


@pytest.fixture(scope="session")
def tiny_config() -> TtsCorpusConfig:
    return TtsCorpusConfig(**TINY)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory, tiny_config):
    """Cache folder holding the tiny corpus; `SpeechDataModule(cache_dir=..., corpus=TINY)` finds it."""
    cache = tmp_path_factory.mktemp("speech-cache")
    generate_tts_corpus(tiny_config, cache)
    return cache


@pytest.fixture(scope="session")
def tiny_corpus(tiny_cache, tiny_config):
    return generate_tts_corpus(tiny_config, tiny_cache)


@pytest.fixture
def tiny_kwargs(tiny_cache) -> dict:
    """SpeechDataModule arguments that reuse the tiny corpus."""
    return {"cache_dir": str(tiny_cache), "corpus": TINY, "batch_size": 4}
