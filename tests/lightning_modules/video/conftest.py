"""Shared fixtures: a private tokenizer cache, one CPU thread, tiny data and tiny encoders."""

import pytest
import torch

from datamodules.video import InstructionalVideoDataModule
from lightning_modules.video import EncoderConfig

TINY_DATA = dict(
    num_train_videos=4,
    num_val_videos=3,
    num_test_videos=3,
    min_steps=2,
    max_steps=3,
    min_step_frames=3,
    max_step_frames=5,
    min_gap_frames=1,
    max_gap_frames=3,
    frame_size=16,
    batch_size=4,
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Tokenizers are cached in a temp dir, never in the working tree."""
    monkeypatch.setenv("CASEBOOK_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors run faster on one thread than on two of a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def video_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("video-cache"))


@pytest.fixture(scope="session")
def align_data(video_cache) -> InstructionalVideoDataModule:
    return InstructionalVideoDataModule(task="align", cache_dir=video_cache, **TINY_DATA)


@pytest.fixture(scope="session")
def pretrain_data(video_cache) -> InstructionalVideoDataModule:
    return InstructionalVideoDataModule(task="pretrain", cache_dir=video_cache, **TINY_DATA)


@pytest.fixture(scope="session")
def data_links(align_data) -> dict:
    """What LightningCLI links from the data to the model (the same for both tasks)."""
    return dict(
        vocab_size=align_data.vocab_size,
        pad_token_id=align_data.pad_token_id,
        feature_dim=align_data.feature_dim,
        frame_shape=align_data.frame_shape,
    )


@pytest.fixture
def tiny_encoder() -> EncoderConfig:
    return EncoderConfig(
        cnn_width=8, text_hidden=32, text_layers=1, text_heads=2, max_text_length=32, embed_dim=32
    )
