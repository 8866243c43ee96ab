"""`Wav2Vec2Network`: the shape of casebook's wav2vec2 body, one component that the CTC teacher
recipe and the self-supervised pre-trainer both take (`--model.network.*`), so a pre-trained body
loads into the teacher because both were built from the same description.

The default feature encoder is far lighter than wav2vec2-base's seven 512-channel convolutions:
one learnable STFT-like convolution (25 ms windows, 10 ms hop), then one that pairs frames. It
keeps wav2vec2's total stride of 320 samples (20 ms frames at 16 kHz), so the datamodule's check
that every transcript fits its frames still holds. LayerNorm after each convolution, not
wav2vec2-base's GroupNorm over time, which makes a frame depend on how much padding its batch has.
Measurements behind these defaults: bench/README.md, Speech.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from transformers import Wav2Vec2Config

SAMPLE_RATE = 16000  # wav2vec2's input rate
FRAME_STRIDE = 320  # samples per output frame: 20 ms


@dataclass(frozen=True)
class Wav2Vec2Network:
    """Architecture of a wav2vec2 body (feature encoder and transformer).

    Args:
        hidden_size: transformer width.
        num_hidden_layers: transformer layers.
        num_attention_heads: attention heads per layer (they divide hidden_size).
        intermediate_size: feed-forward width.
        conv_dim: channels of each feature-encoder convolution.
        conv_kernel: kernel of each feature-encoder convolution.
        conv_stride: stride of each convolution; their product is samples per frame (320: 20 ms).
        num_conv_pos_embeddings: kernel of the convolutional positional embedding.
        num_conv_pos_embedding_groups: groups of the convolutional positional embedding.
        do_stable_layer_norm: pre-LayerNorm transformer and LayerNorm after every convolution
            (wav2vec2-large, steadier from scratch); False: post-LayerNorm transformer and
            GroupNorm after the first convolution (wav2vec2-base).
        feature_init: default, or filterbank: the first convolution starts as Hann-windowed
            cosine and sine pairs at mel-spaced frequencies (an STFT-like filterbank), which
            leaves CTC's all-blank plateau sooner (configs/demo/speech.yaml).
    """

    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    conv_dim: tuple[int, ...] = (256, 256)
    conv_kernel: tuple[int, ...] = (400, 2)
    conv_stride: tuple[int, ...] = (160, 2)
    num_conv_pos_embeddings: int = 32
    num_conv_pos_embedding_groups: int = 8
    do_stable_layer_norm: bool = True
    feature_init: Literal["default", "filterbank"] = "default"

    def __post_init__(self) -> None:
        for name in ("conv_dim", "conv_kernel", "conv_stride"):  # YAML gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if math.prod(self.conv_stride) != FRAME_STRIDE:
            raise ValueError(
                f"network.conv_stride {list(self.conv_stride)} must multiply to {FRAME_STRIDE} "
                "(20 ms frames)"
            )
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride):
            raise ValueError(
                "network.conv_dim, conv_kernel and conv_stride need one entry per convolution, "
                f"got {len(self.conv_dim)}, {len(self.conv_kernel)} and {len(self.conv_stride)}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"network.num_attention_heads {self.num_attention_heads} must divide "
                f"network.hidden_size {self.hidden_size}"
            )

    def config(self, **options) -> Wav2Vec2Config:
        """The `Wav2Vec2Config` of this shape; `options`: any other config field (vocabulary,
        dropout, masking, quantizer)."""
        return Wav2Vec2Config(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            conv_dim=self.conv_dim,
            conv_kernel=self.conv_kernel,
            conv_stride=self.conv_stride,
            num_conv_pos_embeddings=self.num_conv_pos_embeddings,
            num_conv_pos_embedding_groups=self.num_conv_pos_embedding_groups,
            do_stable_layer_norm=self.do_stable_layer_norm,
            feat_extract_norm="layer" if self.do_stable_layer_norm else "group",
            **options,
        )

    def initialize(self, body: nn.Module) -> None:
        """Apply `feature_init` to a freshly built body (a `Wav2Vec2Model`)."""
        if self.feature_init == "filterbank":
            mel_filterbank_(body.feature_extractor.conv_layers[0].conv.weight, SAMPLE_RATE)


def mel_filterbank_(weight: Tensor, sample_rate: int, lowest_hz: float = 60.0) -> Tensor:
    """Fill a (channels, 1, kernel) convolution weight in place with Hann-windowed cosine and sine
    pairs (channels 2i, 2i+1) at frequencies evenly spaced on the mel scale from `lowest_hz` to
    0.95 x Nyquist; an odd last channel gets the bare window. A raw-waveform encoder starting from
    a filterbank, as SincNet (Ravanelli & Bengio 2018) and LEAF (Zeghidour et al. 2021) do,
    instead of random kernels."""
    channels, _, kernel = weight.shape

    def mel(hz: float) -> float:
        return 2595.0 * math.log10(1.0 + hz / 700.0)

    mels = torch.linspace(mel(lowest_hz), mel(0.95 * sample_rate / 2), channels // 2)
    hz = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)  # (channels // 2,)
    t = torch.arange(kernel) / sample_rate
    phase = 2 * math.pi * hz[:, None] * t  # (channels // 2, kernel)
    window = torch.hann_window(kernel, periodic=False)
    pairs = torch.stack([phase.cos(), phase.sin()], dim=1).reshape(-1, kernel) * window
    with torch.no_grad():
        weight[: len(pairs), 0] = pairs / math.sqrt(kernel)
        if channels % 2:
            weight[-1, 0] = window / math.sqrt(kernel)
    return weight
