"""Wav2Vec2Pretrainer: self-supervised pre-training of a wav2vec2 body on unlabeled audio, the
wav2vec 2.0 objective (Baevski et al. 2020), before CTC fine-tuning.

    casebook fit --config configs/speech_pretrain.yaml         # exports runs/speech_pretrain/pretrained
    casebook fit --config configs/speech_teacher.yaml --model.pretrained runs/speech_pretrain/pretrained

A `transformers.Wav2Vec2ForPreTraining` of a `Wav2Vec2Network` shape (the teacher recipe's
`network` component, so the body loads there): spans of the
feature encoder's output are masked (`mask_time_prob` of the frames start a span of
`mask_time_length`), the transformer's output at each masked frame must pick that frame's
quantized feature (Gumbel-softmax product quantizer: `num_codevector_groups` codebooks of
`num_codevectors_per_group` entries) among `num_negatives` quantized frames of the same
utterance (the contrastive loss, cosine similarity over `contrastive_temperature`), plus
`diversity_loss_weight` times the diversity loss that keeps every codebook entry in use. The
Gumbel temperature falls geometrically from `gumbel_temperature[0]` to `[1]` over the run (its
steps, or its `--trainer.max_time` budget). Logged per stage: `loss` (per masked frame),
`contrastive_loss`, `diversity_loss`, `codevector_perplexity` (codebook entries in use, of
`num_codevector_groups * num_codevectors_per_group`), `masked_accuracy` (masked frames whose
own quantized feature scores highest), `gumbel_temperature`.

The data is any `SpeechDataModule` with `labeled: false`: the tts corpus' audio without its
transcripts, a manifest without `text`, or a folder of .wav/.flac files (`source: folder`). At the
end of fit the best checkpoint's model is exported with `save_pretrained` to
`<default_root_dir>/pretrained`; `Wav2Vec2ForCTC.from_pretrained` (the teacher's `pretrained`)
reads its body and starts a new CTC head.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor
from transformers import Wav2Vec2ForPreTraining
from transformers.models.wav2vec2.modeling_wav2vec2 import (
    _compute_mask_indices,
    _sample_negative_indices,
)

from datamodules.hparams import from_plain, plain_hyperparameters
from lightning_modules.common import Optimization, Schedule, configure_adamw, time_budget_used
from lightning_modules.speech.ctc import (
    datamodule_processor,
    default_processor,
    export_pretrained,
    fit_end_export,
)
from lightning_modules.speech.network import Wav2Vec2Network

STAGE_TERMS = ("loss", "contrastive_loss", "diversity_loss", "codevector_perplexity")


def masked_accuracy(
    projected: Tensor, quantized: Tensor, negatives: Tensor, mask: Tensor
) -> Tensor:
    """Share of masked frames whose transformer output (`projected`, (B, T, D)) is closer in
    cosine to its own quantized feature than to each sampled negative (`negatives`, (B, T, K)
    indices into the flattened (B*T) frames); negatives equal to the positive are skipped, as
    the loss skips them."""
    batch, frames, dim = quantized.shape
    negative = quantized.reshape(-1, dim)[negatives.reshape(-1)].view(batch, frames, -1, dim)
    candidates = torch.cat([quantized.unsqueeze(2), negative], dim=2)
    similarity = torch.cosine_similarity(projected.unsqueeze(2).float(), candidates.float(), dim=-1)
    same = (quantized.unsqueeze(2) == negative).all(-1)
    similarity[..., 1:] = similarity[..., 1:].masked_fill(same, float("-inf"))
    correct = similarity.argmax(-1) == 0
    return correct[mask].float().mean() if mask.any() else correct.new_zeros((), dtype=torch.float)


class Wav2Vec2Pretrainer(L.LightningModule):
    """wav2vec 2.0 self-supervised pre-training (contrastive + diversity loss) on unlabeled audio."""

    def __init__(
        self,
        vocab_size: int = 32,
        pad_token_id: int = 0,
        network: Wav2Vec2Network = Wav2Vec2Network(),
        num_codevector_groups: int = 2,
        num_codevectors_per_group: int = 160,
        codevector_dim: int = 128,
        proj_codevector_dim: int = 128,
        num_negatives: int = 50,
        contrastive_temperature: float = 0.1,
        diversity_loss_weight: float = 0.1,
        mask_time_prob: float = 0.65,
        mask_time_length: int = 10,
        gumbel_temperature: tuple[float, float] = (2.0, 0.5),
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 300,
        lr_schedule: Schedule = "cosine",
        export_dir: str | None = None,
        export_best: bool = True,
    ) -> None:
        """
        Args:
            vocab_size: CTC vocabulary of the model fine-tuned from this one (linked from the
                datamodule; no CTC head is trained here).
            pad_token_id: the tokenizer's pad id (linked from the datamodule).
            network: the wav2vec2 body's shape (`Wav2Vec2Network`); the teacher recipe's
                `network` must match it to start from this model's export.
            num_codevector_groups: codebooks of the product quantizer (G).
            num_codevectors_per_group: entries per codebook (V).
            codevector_dim: size of a quantized feature (split over the G codebooks).
            proj_codevector_dim: size both sides are projected to for the cosine similarity.
            num_negatives: distractors sampled from the same utterance per masked frame.
            contrastive_temperature: temperature of the cosine similarities (kappa).
            diversity_loss_weight: alpha, weight of the codebook diversity loss.
            mask_time_prob: share of frames that start a masked span.
            mask_time_length: frames per masked span.
            gumbel_temperature: (start, end) of the quantizer's Gumbel-softmax temperature,
                annealed geometrically over the run.
            lr: AdamW peak learning rate.
            weight_decay: AdamW weight decay of weight matrices and kernels.
            warmup_steps: linear warm-up steps before the schedule.
            lr_schedule: after warm-up: linear, constant, cosine, flat_cosine or one_cycle.
            export_dir: where fit exports the pre-trained model; default
                `<default_root_dir>/pretrained`.
            export_best: export the best checkpoint (lowest val/loss) rather than the last weights.
        """
        super().__init__()
        self.save_hyperparameters()
        plain_hyperparameters(self)  # checkpoints stay loadable with weights_only=True
        network = from_plain(network, Wav2Vec2Network)
        config = network.config(
            vocab_size=vocab_size,
            pad_token_id=pad_token_id,
            num_codevector_groups=num_codevector_groups,
            num_codevectors_per_group=num_codevectors_per_group,
            codevector_dim=codevector_dim,
            proj_codevector_dim=proj_codevector_dim,
            num_negatives=num_negatives,
            contrastive_logits_temperature=contrastive_temperature,
            diversity_loss_weight=diversity_loss_weight,
            mask_time_prob=mask_time_prob,
            mask_time_length=mask_time_length,
            mask_time_min_masks=2,
            # the CTC model fine-tuned from this one: SpecAugment off unless it asks for it
            hidden_dropout=0.0,
            activation_dropout=0.0,
            attention_dropout=0.0,
            feat_proj_dropout=0.0,
            feat_quantizer_dropout=0.0,
            final_dropout=0.0,
        )
        self.model = Wav2Vec2ForPreTraining(config)
        network.initialize(self.model.wav2vec2)
        self._processor = None

    @property
    def processor(self):
        """The datamodule's processor when attached, else the casebook vocabulary's (saved with
        the export so the fine-tuned model's tokenizer matches)."""
        if (attached := datamodule_processor(self)) is not None:
            return attached
        if self._processor is None:
            self._processor = default_processor()
        return self._processor

    def gumbel_temperature(self) -> float:
        """The quantizer's temperature now: geometric from start to end over the run."""
        start, end = self.hparams.gumbel_temperature
        trainer = self._trainer
        progress = 0.0
        if trainer is not None:
            total = trainer.estimated_stepping_batches
            if math.isfinite(total) and total > 0:
                progress = self.global_step / total
            elif (used := time_budget_used(trainer)) is not None:
                progress = used
        return start * (end / start) ** min(max(progress, 0.0), 1.0)

    def masks(self, batch: dict) -> tuple[Tensor, Tensor, Tensor]:
        """(masked frames, negative indices, real frames) of a batch: spans drawn over each
        utterance's real frames (numpy's global generator, which seeding and exact resume cover),
        negatives from the same utterance's real frames."""
        input_values, attention_mask = batch["input_values"], batch["attention_mask"]
        frames = int(self.model._get_feat_extract_output_lengths(input_values.shape[1]))
        real = self.model._get_feature_vector_attention_mask(frames, attention_mask)
        shape = (input_values.shape[0], frames)
        config = self.model.config
        mask = _compute_mask_indices(
            shape,
            config.mask_time_prob,
            config.mask_time_length,
            attention_mask=real,
            min_masks=config.mask_time_min_masks,
        )
        negatives = _sample_negative_indices(
            shape, config.num_negatives, mask_time_indices=real.cpu().numpy().astype(bool)
        )
        device = input_values.device
        return (
            torch.from_numpy(mask).to(device),
            torch.from_numpy(negatives.astype(np.int64)).to(device),
            real.bool(),
        )

    def model_step(self, batch: dict) -> dict[str, Tensor]:
        """Every logged quantity of one batch; `loss` is per masked frame."""
        mask, negatives, _ = self.masks(batch)
        self.model.set_gumbel_temperature(self.gumbel_temperature())
        out = self.model(
            batch["input_values"],
            attention_mask=batch["attention_mask"],
            mask_time_indices=mask,
            sampled_negative_indices=negatives,
        )
        masked = mask.sum().clamp(min=1)
        with torch.no_grad():
            accuracy = masked_accuracy(
                out.projected_states, out.projected_quantized_states, negatives, mask
            )
        return {
            "loss": out.loss / masked,
            "contrastive_loss": out.contrastive_loss / masked,
            "diversity_loss": out.diversity_loss / masked,
            "codevector_perplexity": out.codevector_perplexity,
            "masked_accuracy": accuracy,
        }

    def _log(self, step: dict[str, Tensor], stage: str, batch_size: int) -> None:
        for name, value in step.items():
            self.log(
                f"{stage}/{name}", value, prog_bar=name in ("loss", "masked_accuracy"),
                batch_size=batch_size, sync_dist=stage != "train",
            )  # fmt: skip

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        step = self.model_step(batch)
        self._log(step, "train", len(batch["ids"]))
        self.log("train/gumbel_temperature", self.model.quantizer.temperature)
        return step["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._log(self.model_step(batch), "val", len(batch["ids"]))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._log(self.model_step(batch), "test", len(batch["ids"]))

    def configure_optimizers(self) -> dict:
        return configure_adamw(self, self.model.parameters(), Optimization.of(self.hparams))

    def export(self, directory: str | Path, checkpoint_path: str | Path | None = None) -> Path:
        """`save_pretrained` the model (this module's weights, or a checkpoint's, read with
        weights_only=True) and the processor into `directory`."""
        return export_pretrained(self.model, self.processor, directory, checkpoint_path, "model.")

    def on_fit_end(self) -> None:
        fit_end_export(self, self.hparams.export_dir, "pretrained", self.hparams.export_best)
