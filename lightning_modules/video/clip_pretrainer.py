"""ClipPretrainer: CLIP-style contrastive pre-training of frame and step-text encoders.

    casebook fit  --config configs/clip_pretrainer.yaml
    casebook test --config configs/clip_pretrainer.yaml --ckpt_path best

Batches are (frame, step text) pairs (`--data.task pretrain`). The loss is CLIP's symmetric
InfoNCE with a learnable temperature (Radford et al. 2021); under DDP every rank's pairs are
negatives for every other's, gathered with their gradients (open_clip's local loss); a pair whose
text means the same step (equal `text_ids`) is no negative. Validation and test measure zero-shot
text -> frame retrieval (`recall_at_1`, `recall_at_5`, and on the held-out steps of the
procedural test split). When fitting ends, the encoders of the best checkpoint are written to
`<default_root_dir>/encoders` (or `export_dir`) for `StepAligner --model.pretrained`.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.video.encoders import CHECKPOINT_KEY, ClipEncoders, EncoderConfig
from lightning_modules.video.losses import clip_loss
from lightning_modules.video.metrics import TextToFrameRecall
from lightning_modules.video.optim import warmup_cosine


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
            warmup_steps: linear learning-rate warm-up steps before the cosine decay.
            export_dir: where the trained encoders are written when fitting ends
                (None: <default_root_dir>/encoders).
        """
        super().__init__()
        self.save_hyperparameters()
        self.encoders = ClipEncoders.build(
            encoder or EncoderConfig(), vocab_size, pad_token_id, feature_dim
        )
        self.input_key = "features" if feature_dim else "frames"
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

    def on_validation_epoch_end(self) -> None:
        self._log_recall("val", self.val_recall)

    def on_test_epoch_end(self) -> None:
        self._log_recall("test", self.test_recall)

    def configure_optimizers(self):
        decay = [p for p in self.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.hparams.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.hparams.lr,
        )
        total = self.trainer.estimated_stepping_batches
        scheduler = warmup_cosine(optimizer, self.hparams.warmup_steps, total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

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
