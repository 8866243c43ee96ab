"""Shared by the speech model tests: a tiny synthesized corpus, a tiny saved teacher, one batch."""

import pytest
import torch
from tiny_speech import TINY_NETWORK
from transformers import Wav2Vec2ForCTC

from datamodules.speech import SpeechDataModule
from datamodules.speech.tts_corpus import TtsCorpusConfig, generate_tts_corpus
from lightning_modules.speech import Wav2Vec2CTCRecipe

TINY_CORPUS = {"num_train_sentences": 12, "num_val_sentences": 4, "num_test_sentences": 4}
TINY_TEACHER = {"network": TINY_NETWORK}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors run many times faster on one thread than on two busy cores (restored after
    each module, so tests elsewhere keep their setting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """A cache folder holding the tiny corpus (also `CASEBOOK_CACHE` of the CLI tests)."""
    cache = tmp_path_factory.mktemp("speech-cache")
    generate_tts_corpus(TtsCorpusConfig(**TINY_CORPUS), cache)
    return cache


@pytest.fixture
def tiny_datamodule(tiny_cache) -> SpeechDataModule:
    return SpeechDataModule(cache_dir=str(tiny_cache), corpus=TINY_CORPUS, batch_size=4)


@pytest.fixture(scope="session")
def batch(tiny_cache) -> dict:
    """Four validation utterances as the models receive them."""
    datamodule = SpeechDataModule(cache_dir=str(tiny_cache), corpus=TINY_CORPUS, batch_size=4)
    return next(iter(datamodule.val_dataloader()))


@pytest.fixture(scope="module")
def float_model(teacher_dir) -> Wav2Vec2ForCTC:
    """The tiny seeded teacher (4 layers, 32 wide, random weights), in eval mode: what the int8
    and ONNX tests compare against."""
    return Wav2Vec2ForCTC.from_pretrained(teacher_dir).eval()


@pytest.fixture(scope="module")
def calibration(tiny_cache) -> list[dict]:
    """The three training batches of the tiny corpus, to calibrate static int8 on."""
    datamodule = SpeechDataModule(cache_dir=str(tiny_cache), corpus=TINY_CORPUS, batch_size=4)
    return list(datamodule.train_dataloader())


@pytest.fixture
def teacher_args() -> dict:
    """Wav2Vec2CTCRecipe arguments of a tiny 4-layer model."""
    return dict(TINY_TEACHER)


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    """A randomly initialized tiny teacher exported as `casebook fit` exports one (seeded)."""
    torch.manual_seed(0)
    recipe = Wav2Vec2CTCRecipe(**TINY_TEACHER)
    # a freshly initialized CTC head is near uniform; a wider one makes the models' outputs differ
    torch.nn.init.normal_(recipe.model.lm_head.weight, std=1.0)
    return recipe.export(tmp_path_factory.mktemp("teacher") / "hf")
