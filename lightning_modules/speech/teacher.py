"""Wav2Vec2CTCRecipe: trains the CTC teacher that `Wav2Vec2Distiller` distills.

    casebook fit  --config configs/speech_teacher.yaml
    casebook test --config configs/speech_teacher.yaml --ckpt_path best

A `transformers.Wav2Vec2ForCTC` built from a `Wav2Vec2Config` of the constructor's arguments and
trained from scratch with CTC (or fine-tuned from `pretrained`, a local `save_pretrained` folder or
a hub id). The default feature encoder is far lighter than wav2vec2-base's seven 512-channel
convolutions: one learnable STFT-like convolution (25 ms windows, 10 ms hop), then one that pairs
frames. It keeps wav2vec2's total stride of 320 samples (20 ms frames at 16 kHz), so the
datamodule's check that every transcript fits its frames still holds. On two busy CPU cores it
ran 1.5x the steps per second of a 5-layer encoder with a stride-5 first layer and left CTC's
all-blank plateau after ~450 steps (the other had not after 250). LayerNorm after each
convolution, not wav2vec2-base's GroupNorm over time, which left the plateau ~150 steps sooner
but makes a frame depend on how much padding its batch has. At the end of fit the best checkpoint
is exported with its processor to `<default_root_dir>/hf` (see `export`), the folder the
distiller's `--model.teacher` reads.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from transformers import Wav2Vec2ForCTC

from datamodules.hparams import from_plain, plain_hyperparameters
from lightning_modules.common import Init, Schedule, init_weights
from lightning_modules.speech.beam_search import BeamSearchConfig
from lightning_modules.speech.ctc import (
    CTCSpeechModule,
    frame_mask,
    too_short_for_ctc,
    uniform_ctc_loss,
    warn_too_short,
    wav2vec2_config,
)


class Wav2Vec2CTCRecipe(CTCSpeechModule):
    """A wav2vec2 CTC speech recognizer trained from scratch (or fine-tuned) on `SpeechDataModule`."""

    def __init__(
        self,
        vocab_size: int = 32,
        pad_token_id: int = 0,
        pretrained: str | None = None,
        hidden_size: int = 256,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 4,
        intermediate_size: int = 1024,
        conv_dim: tuple[int, ...] = (256, 256),
        conv_kernel: tuple[int, ...] = (400, 2),
        conv_stride: tuple[int, ...] = (160, 2),
        num_conv_pos_embeddings: int = 32,
        num_conv_pos_embedding_groups: int = 8,
        do_stable_layer_norm: bool = True,
        dropout: float = 0.0,
        layerdrop: float = 0.0,
        mask_time_prob: float = 0.0,
        mask_time_length: int = 5,
        mask_feature_prob: float = 0.0,
        mask_feature_length: int = 10,
        init: Init = "default",
        feature_init: Literal["default", "filterbank"] = "default",
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        lr_schedule: Schedule = "linear",
        export_dir: str | None = None,
        export_best: bool = True,
        worst_utterances: int = 20,
        beam_search: BeamSearchConfig = BeamSearchConfig(),
    ) -> None:
        """
        Args:
            vocab_size: CTC output size (linked from the datamodule).
            pad_token_id: the CTC blank, the tokenizer's pad id (linked from the datamodule).
            pretrained: start from this `save_pretrained` folder or hub id instead of from scratch;
                the size arguments below are then ignored.
            hidden_size: transformer width.
            num_hidden_layers: transformer layers.
            num_attention_heads: attention heads per layer.
            intermediate_size: feed-forward width.
            conv_dim: channels of each feature-encoder convolution.
            conv_kernel: kernel of each feature-encoder convolution.
            conv_stride: stride of each convolution; their product is samples per frame (320: 20 ms).
            num_conv_pos_embeddings: kernel of the convolutional positional embedding.
            num_conv_pos_embedding_groups: groups of the convolutional positional embedding.
            do_stable_layer_norm: pre-LayerNorm transformer and LayerNorm after every convolution
                (wav2vec2-large, steadier from scratch); False: post-LayerNorm transformer and
                GroupNorm after the first convolution (wav2vec2-base).
            dropout: hidden, attention, activation and final dropout.
            layerdrop: probability of skipping a transformer layer in training.
            mask_time_prob: wav2vec2's SpecAugment: share of frames masked in training.
            mask_time_length: frames per time mask.
            mask_feature_prob: SpecAugment's frequency masks, on the feature encoder's channels:
                share of channels masked in training.
            mask_feature_length: channels per feature mask.
            init: from scratch: default (wav2vec2's own), orthogonal, xavier or kaiming for every
                Linear and convolution (the weight-normalized positional convolution keeps its own).
            feature_init: from scratch: default, or filterbank: the first convolution starts as
                Hann-windowed cosine and sine pairs at mel-spaced frequencies (an STFT-like
                filterbank), which leaves CTC's all-blank plateau sooner (configs/demo/speech.yaml).
            lr: AdamW peak learning rate.
            weight_decay: AdamW weight decay of weight matrices and kernels (not biases or norms).
            warmup_steps: linear warmup steps before the schedule.
            lr_schedule: after warm-up: linear (to zero at the last step), constant, cosine,
                flat_cosine or one_cycle.
            export_dir: where fit exports the Hugging Face model; default `<default_root_dir>/hf`.
            export_best: export the best checkpoint (monitored metric) rather than the last weights.
            worst_utterances: error analysis after test: this many highest-WER utterances,
                with their transcripts, in reports/ (a table and a figure).
            beam_search: `casebook test` also decodes by beam search, without and with a word
                n-gram language model of the training transcripts (`test/wer_beam`,
                `test/wer_lm`), and fit saves that model with the export.
        """
        super().__init__()
        self.save_hyperparameters()
        plain_hyperparameters(self)  # checkpoints stay loadable with weights_only=True
        beam_search = from_plain(beam_search, BeamSearchConfig)
        if pretrained is not None:
            self.model = Wav2Vec2ForCTC.from_pretrained(
                pretrained,
                ctc_zero_infinity=True,
                ctc_loss_reduction="mean",
                layerdrop=layerdrop,
                mask_time_prob=mask_time_prob,
                mask_feature_prob=mask_feature_prob,
                mask_feature_length=mask_feature_length,
            )
            if self.model.config.vocab_size != vocab_size:
                raise ValueError(
                    f"pretrained {pretrained!r} has {self.model.config.vocab_size} outputs, "
                    f"the data's vocabulary has {vocab_size}"
                )
        else:
            config = wav2vec2_config(
                conv_stride,
                do_stable_layer_norm,
                vocab_size=vocab_size,
                pad_token_id=pad_token_id,
                hidden_size=hidden_size,
                num_hidden_layers=num_hidden_layers,
                num_attention_heads=num_attention_heads,
                intermediate_size=intermediate_size,
                conv_dim=conv_dim,
                conv_kernel=conv_kernel,
                num_conv_pos_embeddings=num_conv_pos_embeddings,
                num_conv_pos_embedding_groups=num_conv_pos_embedding_groups,
                hidden_dropout=dropout,
                activation_dropout=dropout,
                attention_dropout=dropout,
                final_dropout=dropout,
                layerdrop=layerdrop,
                mask_time_prob=mask_time_prob,
                mask_time_length=mask_time_length,
                mask_time_min_masks=0,
                mask_feature_prob=mask_feature_prob,
                mask_feature_length=mask_feature_length,
                ctc_zero_infinity=True,  # an unalignable utterance gives 0, not inf (and is counted)
                ctc_loss_reduction="mean",  # per-target-length mean: comparable across batches
            )
            self.model = Wav2Vec2ForCTC(config)
            init_weights(self.model, init)
            if feature_init == "filterbank":
                first = self.model.wav2vec2.feature_extractor.conv_layers[0].conv
                mel_filterbank_(first.weight, sample_rate=16000)  # wav2vec2's input rate
        self.init_ctc(worst_utterances, beam_search, pretrained)

    @property
    def backbone(self) -> nn.Module:
        """Everything but the CTC head (feature encoder and transformer), for Lightning's
        `BackboneFinetuning`: fine-tuning a `pretrained` model trains the head alone first, as
        wav2vec2's fine-tuning froze the transformer for its first updates (Baevski et al. 2020)."""
        return self.model.wav2vec2

    def model_step(self, batch: dict, stage: str) -> dict:
        """CTC loss, logits and valid-frame mask of one batch (shared by train, val and test)."""
        out = self.model(
            batch["input_values"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        )
        short = too_short_for_ctc(self.model, batch["attention_mask"], batch["labels"])
        warn_too_short(self, batch, short, stage)
        valid = frame_mask(self.model, out.logits.shape[1], batch["attention_mask"])
        return {"loss": out.loss, "logits": {"": out.logits}, "valid_frames": valid}

    def expected_initial_loss(self, batch: dict) -> float:
        """For `casebook doctor`: the CTC loss of uniform outputs on this batch."""
        return uniform_ctc_loss(self.model, batch)


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
