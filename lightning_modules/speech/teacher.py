"""Wav2Vec2CTCRecipe: trains the CTC teacher that `Wav2Vec2Distiller` distills.

    casebook fit  --config configs/speech_teacher.yaml
    casebook test --config configs/speech_teacher.yaml --ckpt_path best

A `transformers.Wav2Vec2ForCTC` of the `network` component's shape (`Wav2Vec2Network`:
`--model.network.hidden_size`, ...), trained from scratch with CTC (or fine-tuned from
`pretrained`, a local `save_pretrained` folder or a hub id). At the end of fit the best
checkpoint is exported with its processor to `<default_root_dir>/hf` (see `export`), the folder
the distiller's `--model.teacher` reads.
"""

from __future__ import annotations

from torch import nn
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
)
from lightning_modules.speech.network import Wav2Vec2Network


class Wav2Vec2CTCRecipe(CTCSpeechModule):
    """A wav2vec2 CTC speech recognizer trained from scratch (or fine-tuned) on `SpeechDataModule`."""

    def __init__(
        self,
        vocab_size: int = 32,
        pad_token_id: int = 0,
        pretrained: str | None = None,
        network: Wav2Vec2Network = Wav2Vec2Network(),
        dropout: float = 0.0,
        layerdrop: float = 0.0,
        mask_time_prob: float = 0.0,
        mask_time_length: int = 5,
        mask_feature_prob: float = 0.0,
        mask_feature_length: int = 10,
        init: Init = "default",
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
                `network` is then ignored.
            network: the wav2vec2 body's shape (`Wav2Vec2Network`: width, depth, feature
                encoder, normalization, filterbank start), shared with the pre-trainer.
            dropout: hidden, attention, activation and final dropout.
            layerdrop: probability of skipping a transformer layer in training.
            mask_time_prob: wav2vec2's SpecAugment: share of frames masked in training.
            mask_time_length: frames per time mask.
            mask_feature_prob: SpecAugment's frequency masks, on the feature encoder's channels:
                share of channels masked in training.
            mask_feature_length: channels per feature mask.
            init: from scratch: default (wav2vec2's own), orthogonal, xavier or kaiming for every
                Linear and convolution (the weight-normalized positional convolution keeps its own).
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
        network = from_plain(network, Wav2Vec2Network)
        if pretrained is not None:
            self.model = Wav2Vec2ForCTC.from_pretrained(
                pretrained,
                ctc_zero_infinity=True,
                ctc_loss_reduction="mean",
                layerdrop=layerdrop,
                mask_time_prob=mask_time_prob,
                mask_feature_prob=mask_feature_prob,
                mask_feature_length=mask_feature_length,
            ).train()  # from_pretrained returns eval mode, and Lightning does not call train()
            if self.model.config.vocab_size != vocab_size:
                raise ValueError(
                    f"pretrained {pretrained!r} has {self.model.config.vocab_size} outputs, "
                    f"the data's vocabulary has {vocab_size}"
                )
        else:
            config = network.config(
                vocab_size=vocab_size,
                pad_token_id=pad_token_id,
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
            network.initialize(self.model.wav2vec2)
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
