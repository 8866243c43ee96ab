"""StepAligner: where does each step of an instructional video happen, given its ordered texts?

    casebook fit  --config configs/step_aligner.yaml                      # head attend_align
    casebook fit  --config configs/step_aligner.yaml --model.head lstm    # or similarity
    casebook test --config configs/step_aligner.yaml --ckpt_path best     # runs/step_aligner/test_metrics.json
    casebook test --config configs/step_aligner.yaml --model.head zero_shot   # no training

Frames and step texts are embedded by the ClipPretrainer's encoders (`--model.pretrained`,
frozen or fine-tuned) or by fresh ones. Heads (`--model.head`):
- `similarity` (baseline 1): a linear model on frame-step similarities -> (start, end);
- `lstm` (baseline 2): BiLSTM over frames, attention from the step text -> (start, end);
  both trained with 1-D GIoU (Rezatofighi et al. 2019) + L1 on centre and width;
- `attend_align` (main): self- and cross-attention, per-frame classes 0..S with cross-entropy
  (optional label smoothing, optional CRF-style monotonic loss over ordered labellings), decoded
  by Viterbi over the steps in their order with background between;
- `zero_shot`: pretrained similarities + the same ordered decoding, nothing trained.
Every evaluation also scores a uniformly random ordered segmentation (`<stage>/random_*`), and
the test logs a timeline figure of predicted vs true segments.
"""

from __future__ import annotations

import warnings
from typing import Literal

import lightning as L
import torch
from torch import Tensor

from callbacks import log_figure
from datamodules.errors import DataError
from lightning_modules.video.decoding import (
    decode_ordered_steps,
    labelling_score,
    labels_from_segments,
    ordered_log_partition,
    random_segments,
)
from lightning_modules.video.encoders import ClipEncoders, EncoderConfig
from lightning_modules.video.figures import timeline_figure
from lightning_modules.video.heads import (
    AttendAlignHead,
    LSTMAttentionHead,
    SimilarityRegressionHead,
    zero_shot_logits,
)
from lightning_modules.video.losses import frame_cross_entropy, interval_loss
from lightning_modules.video.metrics import StepAlignmentMetrics
from lightning_modules.video.optim import warmup_cosine

Head = Literal["attend_align", "similarity", "lstm", "zero_shot"]
INTERVAL_HEADS = ("similarity", "lstm")


class StepAligner(L.LightningModule):
    def __init__(
        self,
        head: Head = "attend_align",
        pretrained: str | None = None,
        freeze_encoders: bool = False,
        encoder: EncoderConfig | None = None,
        vocab_size: int | None = None,
        pad_token_id: int = 0,
        feature_dim: int | None = None,
        frame_shape: tuple[int, int, int] | None = None,
        hidden: int = 128,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        label_smoothing: float = 0.0,
        monotonic_loss_weight: float = 0.0,
        giou_weight: float = 1.0,
        l1_weight: float = 1.0,
        background_quantile: float = 0.75,
        lr: float = 1e-3,
        encoder_lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_steps: int = 50,
        timeline_videos: int = 4,
        random_seed: int = 0,
    ) -> None:
        """
        Args:
            head: attend_align (main), similarity, lstm (baselines) or zero_shot (no training).
            pretrained: ClipPretrainer output: its encoders folder or a .ckpt; None: fresh encoders.
            freeze_encoders: keep the encoders fixed (eval mode, no gradients); zero_shot always does.
            encoder: architecture of fresh encoders (ignored with `pretrained`).
            vocab_size: tokenizer vocabulary (linked from the data).
            pad_token_id: padding token id (linked from the data).
            feature_dim: size of precomputed frame features, None for frames (linked from the data).
            frame_shape: (3, H, W) of frames, None for features (linked from the data).
            hidden: width of the attend_align and lstm heads.
            layers: attention layers of the attend_align head.
            heads: attention heads of the attend_align head.
            dropout: dropout of the attend_align and lstm heads.
            label_smoothing: label smoothing of the attend_align frame cross-entropy.
            monotonic_loss_weight: weight of the CRF loss over ordered labellings (attend_align).
            giou_weight: weight of 1 - GIoU (similarity, lstm).
            l1_weight: weight of the L1 loss on centre and width (similarity, lstm).
            background_quantile: zero_shot: a frame's background score is this quantile of the
                video's frame-step similarities.
            lr: peak AdamW learning rate of the head.
            encoder_lr: peak AdamW learning rate of fine-tuned encoders.
            weight_decay: AdamW weight decay of weight matrices.
            warmup_steps: linear learning-rate warm-up steps before the cosine decay.
            timeline_videos: test videos drawn in the timeline figure.
            random_seed: seed of the random-segmentation baseline (the same rows every epoch).
        """
        super().__init__()
        self.save_hyperparameters()
        if head not in ("attend_align", "similarity", "lstm", "zero_shot"):
            raise ValueError(
                f"head must be attend_align, similarity, lstm or zero_shot, got {head!r}"
            )
        if pretrained is not None:
            self.encoders = ClipEncoders.load(pretrained)
            spec = self.encoders.spec
            if spec["feature_dim"] != feature_dim:
                takes = f"{spec['feature_dim']}-d features" if spec["feature_dim"] else "frames"
                gives = f"{feature_dim}-d features" if feature_dim else "frames"
                raise DataError(f"{pretrained}: the encoders take {takes}, the data gives {gives}")
            if vocab_size is not None and vocab_size > spec["text_config"]["vocab_size"]:
                raise DataError(
                    f"{pretrained}: the text encoder knows {spec['text_config']['vocab_size']}"
                    f" tokens, the data's tokenizer has {vocab_size}; use the pretrainer's tokenizer"
                )
        else:
            self.encoders = ClipEncoders.build(
                encoder or EncoderConfig(), vocab_size, pad_token_id, feature_dim
            )
            if head == "zero_shot":
                warnings.warn(
                    "zero_shot without --model.pretrained scores untrained encoders", stacklevel=2
                )
        self.frozen = freeze_encoders or head == "zero_shot"
        if self.frozen:
            self.encoders.requires_grad_(False)
        # Only zero_shot reads the CLIP temperature; a trainable unused one would stall DDP.
        self.encoders.log_logit_scale.requires_grad_(False)
        self.input_key = "features" if feature_dim else "frames"
        embed_dim = self.encoders.embed_dim
        if head == "attend_align":
            self.head = AttendAlignHead(embed_dim, hidden, layers, heads, dropout)
        elif head == "lstm":
            self.head = LSTMAttentionHead(embed_dim, hidden, dropout)
        elif head == "similarity":
            self.head = SimilarityRegressionHead()
        else:
            self.head = None
        self.metrics = torch.nn.ModuleDict(
            {name: StepAlignmentMetrics() for name in ("val", "val_random", "test", "test_random")}
        )
        self.timeline: list[dict] = []  # test videos kept for the timeline figure
        self.random_generator = torch.Generator().manual_seed(random_seed)

    def train(self, mode: bool = True) -> StepAligner:
        super().train(mode)
        if self.frozen:
            self.encoders.eval()  # frozen batch-norm statistics and no dropout
        return self

    def embed(self, batch: dict) -> tuple[Tensor, Tensor]:
        """(frames (B, T, E), steps (B, S, E)) from the encoders."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            frames = self.encoders.encode_videos(batch[self.input_key], batch["frame_mask"])
            steps = self.encoders.encode_steps(
                batch["step_input_ids"], batch["step_attention_mask"]
            )
        return frames, steps

    def forward(self, batch: dict) -> dict[str, Tensor]:
        """Head outputs: {"intervals": (B, S, 2) fractions} or {"logits": (B, T, S + 1)}."""
        frames, steps = self.embed(batch)
        frame_mask, step_mask = batch["frame_mask"], batch["step_mask"]
        head = self.hparams.head
        if head in INTERVAL_HEADS:
            return {"intervals": self.head(frames, steps, frame_mask, step_mask)}
        if head == "attend_align":
            return {"logits": self.head(frames, steps, frame_mask, step_mask)}
        logits = zero_shot_logits(
            frames,
            steps,
            frame_mask,
            step_mask,
            self.encoders.logit_scale,
            self.hparams.background_quantile,
        )
        return {"logits": logits}

    def loss(self, outputs: dict[str, Tensor], batch: dict) -> Tensor:
        hp = self.hparams
        frame_mask, step_mask = batch["frame_mask"], batch["step_mask"]
        if "intervals" in outputs:
            lengths = frame_mask.sum(1, keepdim=True)[..., None].float()  # (B, 1, 1)
            # Inclusive frames [s, e] cover [s, e + 1) of the video's [0, T).
            target = (batch["segments"] + torch.tensor([0.0, 1.0], device=lengths.device)) / lengths
            return interval_loss(
                outputs["intervals"], target, step_mask, hp.giou_weight, hp.l1_weight
            )
        logits, labels = outputs["logits"], batch["frame_labels"]
        loss = frame_cross_entropy(logits, labels, step_mask, hp.label_smoothing)
        if hp.monotonic_loss_weight > 0:
            # CRF over ordered labellings: -log p(true labelling | only ordered ones allowed).
            log_probs = logits.float().log_softmax(-1)
            partition = ordered_log_partition(log_probs, frame_mask, step_mask)
            feasible = torch.isfinite(partition)  # not when a video has fewer frames than steps
            if feasible.any():
                nll = (partition - labelling_score(log_probs, labels))[feasible]
                per_frame = nll / frame_mask.sum(1)[feasible]
                loss = loss + hp.monotonic_loss_weight * per_frame.mean()
        return loss

    def predict_segments(self, outputs: dict[str, Tensor], batch: dict) -> tuple[Tensor, Tensor]:
        """(segments (B, S, 2) inclusive frames, -1 at padded steps; frame labels (B, T))."""
        frame_mask, step_mask = batch["frame_mask"], batch["step_mask"]
        if "intervals" in outputs:
            lengths = frame_mask.sum(1)[:, None].float()  # (B, 1)
            start, end = (outputs["intervals"].detach().float() * lengths[..., None]).unbind(-1)
            last = lengths - 1
            start = torch.minimum(start.round().clamp_min(0), last)
            end = torch.minimum(torch.maximum(end.round() - 1, start), last)
            segments = torch.stack([start, end], -1).long().masked_fill(~step_mask[..., None], -1)
            return segments, labels_from_segments(segments, frame_mask, step_mask)
        log_probs = outputs["logits"].detach().float().log_softmax(-1)
        labels, segments = decode_ordered_steps(log_probs, frame_mask, step_mask)
        return segments, labels

    def training_step(self, batch: dict, batch_idx: int) -> Tensor | None:
        if self.head is None:
            return None  # zero_shot: nothing to train
        outputs = self(batch)
        loss = self.loss(outputs, batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["video_ids"]))
        return loss

    def _evaluate(self, batch: dict, stage: str) -> None:
        outputs = self(batch)
        size = len(batch["video_ids"])
        if self.head is not None:
            self.log(f"{stage}/loss", self.loss(outputs, batch), sync_dist=True, batch_size=size)
        segments, labels = self.predict_segments(outputs, batch)
        truth = (batch["segments"].long(), batch["step_mask"])
        self.metrics[stage].update(segments, *truth, labels, batch["frame_labels"])
        chance = random_segments(batch["frame_mask"], batch["step_mask"], self.random_generator)
        chance_labels = labels_from_segments(chance, batch["frame_mask"], batch["step_mask"])
        self.metrics[f"{stage}_random"].update(chance, *truth, chance_labels, batch["frame_labels"])
        if stage == "test" and len(self.timeline) < self.hparams.timeline_videos:
            self._keep_for_timeline(batch, segments)

    def _keep_for_timeline(self, batch: dict, segments: Tensor) -> None:
        for b in range(len(batch["video_ids"])):
            if len(self.timeline) >= self.hparams.timeline_videos:
                return
            n = int(batch["step_mask"][b].sum())
            self.timeline.append(
                {
                    "video_id": batch["video_ids"][b],
                    "num_frames": int(batch["frame_mask"][b].sum()),
                    "true": batch["segments"][b, :n].long().tolist(),
                    "pred": segments[b, :n].tolist(),
                    "texts": batch["step_texts"][b],
                }
            )

    def _start_evaluation(self) -> None:
        self.random_generator = torch.Generator().manual_seed(self.hparams.random_seed)
        self.timeline = []

    def on_validation_epoch_start(self) -> None:
        self._start_evaluation()

    def on_test_epoch_start(self) -> None:
        self._start_evaluation()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        for name, prefix in ((stage, ""), (f"{stage}_random", "random_")):
            values = self.metrics[name].compute()
            self.log_dict({f"{stage}/{prefix}{key}": value for key, value in values.items()})
            self.metrics[name].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")
        if self.timeline:
            title = f"{self.hparams.head}: predicted vs true steps"
            log_figure(self.trainer, "test/timeline", timeline_figure(self.timeline, title))

    def configure_optimizers(self):
        hp = self.hparams
        trained = [(self.head, hp.lr)] if self.head is not None else []
        if not self.frozen:
            trained.append((self.encoders, hp.encoder_lr))
        if not trained:
            return None  # zero_shot: Lightning runs the loops without an optimizer
        groups = []
        for module, lr in trained:
            params = [p for p in module.parameters() if p.requires_grad]
            matrices = [p for p in params if p.ndim >= 2]
            others = [p for p in params if p.ndim < 2]  # biases, norms, temperature: no decay
            groups.append({"params": matrices, "lr": lr, "weight_decay": hp.weight_decay})
            groups.append({"params": others, "lr": lr, "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(groups)
        total = self.trainer.estimated_stepping_batches
        scheduler = warmup_cosine(optimizer, hp.warmup_steps, total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
