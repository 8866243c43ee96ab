"""ClipPretrainer: CLIP-style contrastive pre-training of frame and step-text encoders.

    casebook fit  --config configs/clip_pretrainer.yaml
    casebook test --config configs/clip_pretrainer.yaml --ckpt_path best
    casebook predict --config configs/clip_pretrainer.yaml --config configs/presets/npy_predictions.yaml \\
        --data.source video --data.video_dir VIDEOS --data.annotations A.json \\
        --ckpt_path best --return_predictions false     # every video -> <video_id>.npy, once

Batches are (frame, step text) pairs (`--data.task pretrain`). The loss is CLIP's symmetric
InfoNCE with a learnable temperature (Radford et al. 2021); under DDP every rank's pairs are
negatives for every other's, gathered with their gradients (open_clip's local loss); a pair whose
text means the same step (equal `text_ids`) is no negative. Validation and test measure zero-shot
text -> frame retrieval (`recall_at_1`, `recall_at_5`, and on the held-out steps of the
procedural test split). When fitting ends, the encoders of the best checkpoint are written to
`<default_root_dir>/encoders` (or `export_dir`) for `StepAligner --model.pretrained`.
`casebook predict` returns each video's frame embeddings for a prediction writer to cache as
`<video_id>.npy`, which `StepAligner` then reads with `--data.source features` (see `predict_step`).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.hparams import from_plain, plain_hyperparameters
from lightning_modules.common import (
    Init,
    Optimization,
    Schedule,
    configure_adamw,
    init_weights,
)
from lightning_modules.video.augment import cutout, mix_inputs
from lightning_modules.video.encoders import CHECKPOINT_KEY, ClipEncoders, EncoderConfig
from lightning_modules.video.losses import clip_loss
from lightning_modules.video.metrics import TextToFrameRecall


class ClipPretrainer(L.LightningModule):
    def __init__(
        self,
        encoder: EncoderConfig | None = None,
        vocab_size: int | None = None,
        pad_token_id: int = 0,
        feature_dim: int | None = None,
        frame_shape: tuple[int, int, int] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 50,
        lr_schedule: Schedule = "cosine",
        init: Init = "default",
        cutout_prob: float = 0.0,
        mixup_alpha: float = 0.0,
        export_dir: str | None = None,
    ) -> None:
        """
        Args:
            encoder: architecture of the frame and text encoders and the shared embedding.
            vocab_size: tokenizer vocabulary (linked from the data).
            pad_token_id: padding token id (linked from the data).
            feature_dim: size of precomputed frame features, None for frames (linked from the data).
            frame_shape: (3, H, W) of frames, None for features (linked from the data).
            lr: peak AdamW learning rate.
            weight_decay: AdamW weight decay of weight matrices (not of biases, norms, temperature).
            warmup_steps: linear learning-rate warm-up steps before the schedule.
            lr_schedule: after warm-up: cosine, constant, linear, flat_cosine or one_cycle.
            init: the frame encoder's and both projections' layers: default (PyTorch's),
                orthogonal, xavier or kaiming (the text encoder keeps its own, maybe pretrained).
            cutout_prob: training only: probability a frame gets an erased box; frames only.
            mixup_alpha: training only: Mixup of each frame with its batch neighbour, lambda ~
                Beta(alpha, alpha), the loss mixed alike (i-Mix); 0 disables.
            export_dir: where the trained encoders are written when fitting ends
                (None: <default_root_dir>/encoders).
        """
        super().__init__()
        self.save_hyperparameters()
        plain_hyperparameters(self)  # checkpoints stay loadable with weights_only=True
        encoder = from_plain(encoder, EncoderConfig)
        self.encoders = ClipEncoders.build(
            encoder or EncoderConfig(), vocab_size, pad_token_id, feature_dim
        )
        self.input_key = "features" if feature_dim else "frames"
        if cutout_prob > 0 and feature_dim:
            raise ValueError("cutout_prob needs frames; the data gives precomputed features")
        for part in (
            self.encoders.frame_encoder,
            self.encoders.frame_projection,
            self.encoders.text_projection,
        ):
            init_weights(part, init)
        self.val_recall = TextToFrameRecall()
        self.test_recall = TextToFrameRecall()

    def embed(self, batch: dict) -> tuple[Tensor, Tensor]:
        """L2-normalized (frame, text) embeddings of a pair batch, each (N, embed_dim)."""
        frames = self.encoders.encode_frames(batch[self.input_key])
        texts = self.encoders.encode_texts(batch["input_ids"], batch["attention_mask"])
        return F.normalize(frames, dim=-1), F.normalize(texts, dim=-1)

    def model_step(self, batch: dict) -> tuple[Tensor, Tensor, Tensor]:
        frames, texts = self.embed(batch)
        loss = clip_loss(frames, texts, batch["text_ids"], self.encoders.logit_scale)
        return loss, frames, texts

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        hp = self.hparams
        if hp.cutout_prob > 0:
            batch = {**batch, "frames": cutout(batch["frames"], hp.cutout_prob)}
        if hp.mixup_alpha > 0:
            mixed, lam = mix_inputs(batch[self.input_key], hp.mixup_alpha)
            frames, texts = self.embed({**batch, self.input_key: mixed})
            # Frame i is lam parts pair i and 1 - lam parts pair i - 1: so is its target.
            scale, text_ids = self.encoders.logit_scale, batch["text_ids"]
            loss = lam * clip_loss(frames, texts, text_ids, scale) + (1 - lam) * clip_loss(
                frames, texts.roll(1, 0), text_ids.roll(1, 0), scale
            )
        else:
            loss, frames, texts = self.model_step(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/logit_scale", self.encoders.logit_scale.detach())
        # How often a frame's nearest text in the (local) batch is its own or a synonym.
        nearest = (frames @ texts.T).argmax(1)
        text_ids = batch["text_ids"]
        self.log("train/batch_acc", (text_ids[nearest] == text_ids).float().mean())
        return loss

    def _evaluate(self, batch: dict, stage: str, recall: TextToFrameRecall) -> None:
        loss, frames, texts = self.model_step(batch)
        self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=len(frames))
        recall.update(frames, texts, batch["text_ids"], batch["heldout"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_recall)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_recall)

    def _log_recall(self, stage: str, recall: TextToFrameRecall) -> None:
        self.log_dict({f"{stage}/{name}": value for name, value in recall.compute().items()})
        recall.reset()

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, Tensor]:
        """{video_id: (T, embed_dim)}: each whole video's frame embeddings, padding dropped,
        for `callbacks.NpyPredictionWriter` to cache as `<video_id>.npy`.

        What is cached is `ClipEncoders.encode_frames`: projected into the shared embedding, not
        normalized, i.e. exactly the frame embeddings StepAligner computes from these frames with
        these encoders. StepAligner with `--data.source features` and `--model.pretrained` (the
        same encoders) then reads the files through an identity frame path and the pretrained
        text encoder, so it is the same model as on the frames with frozen encoders, every head
        included, at none of the decoding and CNN cost. (The norm is kept because the heads
        see it; zero_shot and the CLIP loss use cosines and do not.)
        """
        embeddings = self.encoders.encode_videos(batch[self.input_key], batch["frame_mask"])
        return {
            video_id: video[mask]
            for video_id, video, mask in zip(batch["video_ids"], embeddings, batch["frame_mask"])
        }

    def on_validation_epoch_end(self) -> None:
        self._log_recall("val", self.val_recall)

    def on_test_epoch_end(self) -> None:
        self._log_recall("test", self.test_recall)

    def expected_initial_loss(self, batch: dict) -> float:
        """For `casebook doctor`: the CLIP loss when every similarity is equal (uninformative
        embeddings): ln of the candidates each pair is scored against, duplicates excluded."""
        text_ids = batch["text_ids"]
        same = text_ids.new_zeros((len(text_ids), 1), dtype=torch.float)
        return float(clip_loss(same, same, text_ids, same.new_zeros(())))

    def configure_optimizers(self):
        return configure_adamw(self, self.parameters(), Optimization.of(self.hparams))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The encoders' architecture, so `ClipEncoders.load(<this .ckpt>)` needs nothing else.
        checkpoint[CHECKPOINT_KEY] = self.encoders.spec

    def on_fit_end(self) -> None:
        """Write the best checkpoint's encoders (the current ones without a checkpoint)."""
        if not self.trainer.is_global_zero:
            return
        directory = Path(
            self.hparams.export_dir or Path(self.trainer.default_root_dir) / "encoders"
        )
        callback = self.trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "") if callback else ""
        encoders = ClipEncoders.load(best) if best and Path(best).is_file() else self.encoders
        encoders.save(directory)
        print(f"encoders written to {directory}")
