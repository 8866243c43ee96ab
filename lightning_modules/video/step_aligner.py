"""StepAligner: where does each step of an instructional video happen, given its ordered texts?

    casebook fit  --config configs/step_aligner.yaml                      # head attend_align
    casebook fit  --config configs/step_aligner.yaml --model.head lstm    # or similarity
    casebook test --config configs/step_aligner.yaml --ckpt_path best     # runs/step_aligner/test_metrics.json
    casebook test --config configs/step_aligner.yaml --model.head zero_shot   # no training

Frames and step texts are embedded by the ClipPretrainer's encoders (`--model.pretrained`,
frozen or fine-tuned) or by fresh ones. Over `--data.source features` written by those same
encoders (`casebook predict`, `ClipPretrainer.predict_step`), the features are taken as their
frame embeddings (identity frame path, pretrained text encoder): the same model as on the frames.
Heads (`--model.head`):
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

from callbacks import gather_from_ranks, log_figure, log_table
from datamodules.errors import DataError
from datamodules.hparams import from_plain, plain_hyperparameters
from datamodules.video.datasets import IGNORE_INDEX
from lightning_modules.common import (
    Init,
    Schedule,
    build_scheduler,
    decay_groups,
    init_weights,
    time_budget_used,
)
from lightning_modules.video.augment import cutout
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
    PositionalEncoding,
    SimilarityRegressionHead,
    zero_shot_logits,
)
from lightning_modules.video.losses import frame_cross_entropy, interval_loss
from lightning_modules.video.metrics import StepAlignmentMetrics, segment_iou

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
        positional_encoding: PositionalEncoding = "sinusoidal",
        max_frames: int = 1024,
        init: Init = "default",
        cutout_prob: float = 0.0,
        label_smoothing: float = 0.0,
        monotonic_loss_weight: float = 0.0,
        giou_weight: float = 1.0,
        l1_weight: float = 1.0,
        background_quantile: float = 0.75,
        lr: float = 1e-3,
        encoder_lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_steps: int = 50,
        lr_schedule: Schedule = "cosine",
        timeline_videos: int = 4,
        worst_videos: int = 10,
        random_seed: int = 0,
    ) -> None:
        """
        Args:
            head: attend_align (main), similarity, lstm (baselines) or zero_shot (no training).
            pretrained: ClipPretrainer output: its encoders folder or a .ckpt; None: fresh encoders.
                Frame encoders over embed_dim-d features read them as their own cached embeddings.
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
            positional_encoding: attend_align's absolute frame positions: sinusoidal, learned or none.
            max_frames: learned positional encoding: positions learned (later frames share the last).
            init: attend_align's layers: default (PyTorch's), orthogonal, xavier or kaiming (the
                baselines keep their designed starting points).
            cutout_prob: training only: probability a video gets an erased box (the same in all its
                frames) before the frame encoder; frames only.
            label_smoothing: label smoothing of the attend_align frame cross-entropy.
            monotonic_loss_weight: weight of the CRF loss over ordered labellings (attend_align).
            giou_weight: weight of 1 - GIoU (similarity, lstm).
            l1_weight: weight of the L1 loss on centre and width (similarity, lstm).
            background_quantile: zero_shot: a frame's background score is this quantile of the
                video's frame-step similarities.
            lr: peak AdamW learning rate of the head.
            encoder_lr: peak AdamW learning rate of fine-tuned encoders.
            weight_decay: AdamW weight decay of weight matrices.
            warmup_steps: linear learning-rate warm-up steps before the schedule.
            lr_schedule: after warm-up: cosine, constant, linear, flat_cosine or one_cycle.
            timeline_videos: test videos drawn in the timeline figure.
            worst_videos: error analysis after test: this many lowest-mIoU videos in reports/ (a
                table) and figures/ (their timelines).
            random_seed: seed of the random-segmentation baseline (the same rows every epoch).
        """
        super().__init__()
        self.save_hyperparameters()
        plain_hyperparameters(self)  # checkpoints stay loadable with weights_only=True
        encoder = from_plain(encoder, EncoderConfig)
        if head not in ("attend_align", "similarity", "lstm", "zero_shot"):
            raise ValueError(
                f"head must be attend_align, similarity, lstm or zero_shot, got {head!r}"
            )
        if pretrained is not None:
            self.encoders = ClipEncoders.load(pretrained)
            spec = self.encoders.spec
            if spec["feature_dim"] is None and feature_dim == self.encoders.embed_dim:
                # Features from frame encoders' own `casebook predict` (ClipPretrainer.predict_step).
                self.encoders.over_cached_frames()
            elif spec["feature_dim"] != feature_dim:
                takes = f"{spec['feature_dim']}-d features" if spec["feature_dim"] else "frames"
                gives = f"{feature_dim}-d features" if feature_dim else "frames"
                if not spec["feature_dim"]:
                    gives += f" (not their cached {self.encoders.embed_dim}-d frame embeddings)"
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
            # Lightning 2.x never calls train() when fit starts: a module keeps the mode it was
            # built in, so the frozen encoders go to eval mode here, and train() keeps them there.
            self.encoders.requires_grad_(False).eval()
        # Only zero_shot reads the CLIP temperature; a trainable unused one would stall DDP.
        self.encoders.log_logit_scale.requires_grad_(False)
        self.input_key = "features" if feature_dim else "frames"
        embed_dim = self.encoders.embed_dim
        if cutout_prob > 0 and feature_dim:
            raise ValueError("cutout_prob needs frames; the data gives precomputed features")
        if head == "attend_align":
            self.head = AttendAlignHead(
                embed_dim,
                hidden,
                layers,
                heads,
                dropout,
                positional_encoding=positional_encoding,
                max_frames=max_frames,
            )
            init_weights(self.head, init)
        elif head == "lstm":
            self.head = LSTMAttentionHead(embed_dim, hidden, dropout)
        elif head == "similarity":
            self.head = SimilarityRegressionHead()
        else:
            self.head = None
        self.metrics = torch.nn.ModuleDict(
            {name: StepAlignmentMetrics() for name in ("val", "val_random", "test", "test_random")}
        )
        self.test_videos: list[dict] = []  # this rank's test alignments (figures, error analysis)
        self.random_generator = torch.Generator().manual_seed(random_seed)

    @property
    def backbone(self) -> torch.nn.ModuleList:
        """The pretrained encoders without the CLIP temperature (which only zero_shot reads), for
        Lightning's `BackboneFinetuning` callback: frozen first, then unfrozen into a parameter
        group of its own at `unfreeze_backbone_at_epoch` (use it with `freeze_encoders: false`)."""
        e = self.encoders
        return torch.nn.ModuleList(
            [e.frame_encoder, e.frame_projection, e.text_encoder, e.text_projection]
        )

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
        if self.hparams.cutout_prob > 0:
            batch = {**batch, "frames": cutout(batch["frames"], self.hparams.cutout_prob)}
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
        if stage == "test":
            self._keep_test_videos(batch, segments, labels)

    def _keep_test_videos(self, batch: dict, segments: Tensor, labels: Tensor) -> None:
        """Every test video's alignment, for the timeline figure and the error analysis."""
        truth = batch["segments"].long()
        iou = torch.where(segments[..., 0] >= 0, segment_iou(segments.float(), truth.float()), 0.0)
        for b in range(len(batch["video_ids"])):
            n = int(batch["step_mask"][b].sum())
            frames = batch["frame_labels"][b] != IGNORE_INDEX
            self.test_videos.append(
                {
                    "video_id": batch["video_ids"][b],
                    "num_frames": int(batch["frame_mask"][b].sum()),
                    "true": truth[b, :n].tolist(),
                    "pred": segments[b, :n].tolist(),
                    "texts": batch["step_texts"][b],
                    "ious": iou[b, :n].tolist(),
                    "frame_acc": float(
                        (labels[b] == batch["frame_labels"][b])[frames].float().mean()
                    ),
                }
            )

    def report_worst_videos(self) -> None:
        """Error analysis: the lowest-mIoU test videos as `reports/test-worst_videos.{csv,md}` (with
        their worst step) and their timelines as `figures/test-worst_videos.png`."""
        videos = [video for part in gather_from_ranks(self.test_videos) for video in part]
        miou = lambda video: sum(video["ious"]) / max(len(video["ious"]), 1)  # noqa: E731
        worst = sorted(videos, key=miou)[: self.hparams.worst_videos]
        rows = []
        for video in worst:
            step = min(range(len(video["ious"])), key=video["ious"].__getitem__, default=None)
            rows.append(
                {
                    "video_id": video["video_id"],
                    "steps": len(video["ious"]),
                    "frames": video["num_frames"],
                    "miou": miou(video),
                    "frame_acc": video["frame_acc"],
                    "worst_step": "" if step is None else video["texts"][step],
                    "worst_step_iou": 0.0 if step is None else video["ious"][step],
                    "true": " ".join(f"{s}-{e}" for s, e in video["true"]),
                    "predicted": " ".join(f"{s}-{e}" for s, e in video["pred"]),
                }
            )
        log_table(self.trainer, "test/worst_videos", rows)
        if worst:
            title = f"{self.hparams.head}: the {len(worst)} lowest-mIoU test videos"
            log_figure(self.trainer, "test/worst_videos", timeline_figure(worst, title))

    def _start_evaluation(self) -> None:
        self.random_generator = torch.Generator().manual_seed(self.hparams.random_seed)
        self.test_videos = []

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
        if self.test_videos and self.trainer.is_global_zero:
            title = f"{self.hparams.head}: predicted vs true steps"
            shown = self.test_videos[: self.hparams.timeline_videos]
            log_figure(self.trainer, "test/timeline", timeline_figure(shown, title))
        self.report_worst_videos()

    def expected_initial_loss(self, batch: dict) -> float | None:
        """For `casebook doctor`: this module's loss for uniform frame classes (all-zero logits):
        ln(steps + 1) per frame, plus the monotonic term when weighted. None for the interval
        heads, which have no uninformative output, and zero_shot, which trains nothing."""
        if self.hparams.head != "attend_align":
            return None
        frame_mask, step_mask = batch["frame_mask"], batch["step_mask"]
        logits = frame_mask.new_zeros(
            (*frame_mask.shape, step_mask.shape[1] + 1), dtype=torch.float
        )
        return float(self.loss({"logits": logits}, batch))

    def configure_optimizers(self):
        hp = self.hparams
        trained = [(self.head, hp.lr)] if self.head is not None else []
        if not self.frozen:
            trained.append((self.encoders, hp.encoder_lr))
        if not trained:
            return None  # zero_shot: Lightning runs the loops without an optimizer
        groups = [
            group
            for module, lr in trained
            for group in decay_groups(module.parameters(), hp.weight_decay, lr=lr)
        ]
        if not groups:  # every encoder parameter frozen by BackboneFinetuning, and no head
            return None
        optimizer = torch.optim.AdamW(groups)
        total = self.trainer.estimated_stepping_batches
        scheduler = build_scheduler(
            optimizer,
            hp.lr_schedule,
            total,
            hp.warmup_steps,
            lambda: time_budget_used(self.trainer),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
