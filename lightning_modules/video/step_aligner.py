"""StepAligner: where does each step of an instructional video happen, given its ordered texts?

    casebook fit  --config configs/step_aligner.yaml                      # head attend_align
    casebook fit  --config configs/step_aligner.yaml --model.head lstm    # or similarity
    casebook test --config configs/step_aligner.yaml --ckpt_path best     # runs/step_aligner/test_metrics.json
    casebook test --config configs/step_aligner.yaml --model.head zero_shot   # no training

Frames and step texts are embedded by the ClipPretrainer's encoders (`--model.pretrained`,
frozen or fine-tuned) or by fresh ones. Over `--data.source features` written by those same
encoders (`casebook predict`, `ClipPretrainer.predict_step`), the features are taken as their
frame embeddings (identity frame path, pretrained text encoder): the same model as on the frames.
Heads (`--model.head`, a component that owns its forward, loss and decoding; heads.py), by name
(built from this module's options) or as `class_path` + `init_args`:
- `similarity` (baseline 1): a linear model on frame-step similarities -> (start, end);
- `lstm` (baseline 2): BiLSTM over frames, attention from the step text -> (start, end);
  both trained with 1-D GIoU (Rezatofighi et al. 2019) + L1 on centre and width;
- `attend_align` (main): self- and cross-attention, per-frame classes 0..S with cross-entropy
  (optional label smoothing, optional CRF-style monotonic loss over ordered labellings);
- `zero_shot`: pretrained similarities, nothing trained.
The frame-class heads are decoded (`--model.decoding`) by Viterbi over the steps in their listed
order with background between (`ordered`), or letting steps be skipped, repeated or out of
order at a price (`order_tolerant`, `--model.order_tolerance`; decoding.py).
Every evaluation also scores a uniformly random ordered segmentation (`<stage>/random_*`), and
the test logs a timeline figure of predicted vs true segments.
"""

from __future__ import annotations

import functools
import warnings
from typing import Literal

import lightning as L
import torch
from torch import Tensor

from casebook.common.distributed import gather_from_ranks
from casebook.common.errors import DataError
from casebook.common.figures import log_figure
from casebook.common.tables import log_table
from datamodules.hparams import from_plain, plain_hyperparameters
from datamodules.video.datasets import IGNORE_INDEX
from lightning_modules.common import Init, Optimization, Schedule, configure_adamw
from lightning_modules.video.augment import add_feature_noise, cutout
from lightning_modules.video.decoding import (
    Decoding,
    OrderTolerance,
    decode_steps,
    labels_from_segments,
    random_segments,
)
from lightning_modules.video.encoders import ClipEncoders, EncoderConfig
from lightning_modules.video.figures import timeline_figure
from lightning_modules.video.heads import (
    AttendAlignHead,
    HeadFactory,
    LSTMAttentionHead,
    PositionalEncoding,
    SimilarityRegressionHead,
    StepHead,
    ZeroShotHead,
)
from lightning_modules.video.metrics import StepAlignmentMetrics, segment_iou

Head = Literal["attend_align", "similarity", "lstm", "zero_shot"]


class StepAligner(L.LightningModule):
    def __init__(
        self,
        head: Head | HeadFactory = "attend_align",
        pretrained: str | None = None,
        freeze_encoders: bool | None = None,
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
        feature_noise: float = 0.0,
        label_smoothing: float = 0.0,
        monotonic_loss_weight: float = 0.0,
        giou_weight: float = 1.0,
        l1_weight: float = 1.0,
        background_quantile: float = 0.75,
        decoding: Decoding = "ordered",
        order_tolerance: OrderTolerance | None = None,
        lr: float = 1e-3,
        encoder_lr: float | None = None,
        weight_decay: float = 0.01,
        warmup_steps: int = 50,
        lr_schedule: Schedule = "cosine",
        timeline_videos: int = 4,
        worst_videos: int = 10,
        random_seed: int = 0,
    ) -> None:
        """
        Args:
            head: attend_align (main), similarity, lstm (baselines) or zero_shot (no training),
                built from the options below; or a component (`class_path` + `init_args`, a
                heads.StepHead called with the encoders' width), which owns its own options.
            pretrained: ClipPretrainer output: its encoders folder or a .ckpt; None: fresh encoders.
                Frame encoders over embed_dim-d features read them as their own cached embeddings.
            freeze_encoders: keep the encoders fixed (eval mode, no gradients); zero_shot always
                does. None: fixed when `pretrained`, trained when fresh (random fixed encoders
                mean nothing); the saved hyper-parameter holds the resolved choice.
            encoder: architecture of fresh encoders (ignored with `pretrained`).
            vocab_size: tokenizer vocabulary (linked from the data).
            pad_token_id: padding token id (linked from the data).
            feature_dim: size of precomputed frame features, None for frames (linked from the data).
            frame_shape: (3, H, W) of frames, None for features (linked from the data).
            hidden: width of the attend_align and lstm heads (named heads only, as down to
                background_quantile).
            layers: attention layers of the attend_align head.
            heads: attention heads of the attend_align head.
            dropout: dropout of the attend_align and lstm heads.
            positional_encoding: attend_align's absolute frame positions: sinusoidal, learned or none.
            max_frames: learned positional encoding: positions learned (later frames share the last).
            init: attend_align's layers: default (PyTorch's), orthogonal, xavier or kaiming (the
                baselines keep their designed starting points).
            cutout_prob: training only: probability a video gets an erased box (the same in all its
                frames) before the frame encoder; frames only.
            feature_noise: training only: Gaussian noise added to precomputed features, its
                expected norm this share of the batch's mean feature norm (new noise every step,
                so a small training set cannot be memorized frame by frame); precomputed
                features only, frames (which have `cutout_prob`) are left alone.
            label_smoothing: label smoothing of the attend_align frame cross-entropy.
            monotonic_loss_weight: weight of the CRF loss over ordered labellings (attend_align).
            giou_weight: weight of 1 - GIoU (similarity, lstm).
            l1_weight: weight of the L1 loss on centre and width (similarity, lstm).
            background_quantile: zero_shot: a frame's background score is this quantile of the
                video's frame-step similarities.
            decoding: frame-class heads: ordered (every listed step once, in the listed order) or
                order_tolerant (steps may be skipped, repeated or out of order, at a price).
            order_tolerance: order_tolerant's prices (order_penalty, skip_penalty), in nats;
                None: the defaults of decoding.OrderTolerance.
            lr: peak AdamW learning rate of the head.
            encoder_lr: peak AdamW learning rate of trained encoders; None: `lr` for fresh
                encoders, lr / 10 for pretrained ones.
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
        head = from_plain(head)
        if isinstance(head, str) and head not in (
            "attend_align",
            "similarity",
            "lstm",
            "zero_shot",
        ):
            raise ValueError(
                f"head must be attend_align, similarity, lstm or zero_shot, got {head!r}"
            )
        tolerance = from_plain(order_tolerance, OrderTolerance) or OrderTolerance()
        self.decode = functools.partial(decode_steps, decoding=decoding, tolerance=tolerance)
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
        embed_dim = self.encoders.embed_dim
        if isinstance(head, str):
            self.head: StepHead = named_head(head, embed_dim, self.hparams)
        else:
            self.head = head(embed_dim)
        if pretrained is None and not self.head.trains:
            warnings.warn(
                f"{self.head.name} without --model.pretrained scores untrained encoders",
                stacklevel=2,
            )
        if freeze_encoders is None:
            # resolved in the saved hyper-parameters too, for readers of checkpoints (casebook search)
            self.hparams.freeze_encoders = freeze_encoders = pretrained is not None
        self.frozen = freeze_encoders or not self.head.trains
        if self.frozen:
            # Lightning 2.x never calls train() when fit starts: a module keeps the mode it was
            # built in, so the frozen encoders go to eval mode here, and train() keeps them there.
            self.encoders.requires_grad_(False).eval()
        # Only zero_shot reads the CLIP temperature; a trainable unused one would stall DDP.
        self.encoders.log_logit_scale.requires_grad_(False)
        self.input_key = "features" if feature_dim else "frames"
        if cutout_prob > 0 and feature_dim:
            raise ValueError("cutout_prob needs frames; the data gives precomputed features")
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
        return self.head.align(
            frames, steps, batch["frame_mask"], batch["step_mask"], self.encoders.logit_scale
        )

    def loss(self, outputs: dict[str, Tensor], batch: dict) -> Tensor:
        return self.head.loss(outputs, batch)

    def predict_segments(self, outputs: dict[str, Tensor], batch: dict) -> tuple[Tensor, Tensor]:
        """(segments (B, S, 2) inclusive frames, -1 at padded or left-out steps; labels (B, T))."""
        return self.head.segments(outputs, batch["frame_mask"], batch["step_mask"], self.decode)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor | None:
        if not self.head.trains:
            return None  # zero_shot: nothing to train
        if self.hparams.cutout_prob > 0:
            batch = {**batch, "frames": cutout(batch["frames"], self.hparams.cutout_prob)}
        if self.hparams.feature_noise > 0 and "features" in batch:
            noisy = add_feature_noise(
                batch["features"], batch["frame_mask"], self.hparams.feature_noise
            )
            batch = {**batch, "features": noisy}
        outputs = self(batch)
        loss = self.loss(outputs, batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["video_ids"]))
        return loss

    def _evaluate(self, batch: dict, stage: str) -> None:
        outputs = self(batch)
        size = len(batch["video_ids"])
        if self.head.trains:
            self.log(f"{stage}/loss", self.loss(outputs, batch), sync_dist=True, batch_size=size)
        segments, labels = self.predict_segments(outputs, batch)
        top = self.head.top_frames(outputs, batch["frame_mask"])
        truth = (batch["segments"].long(), batch["step_mask"])
        self.metrics[stage].update(segments, *truth, labels, batch["frame_labels"], top)
        chance = random_segments(batch["frame_mask"], batch["step_mask"], self.random_generator)
        chance_labels = labels_from_segments(chance, batch["frame_mask"], batch["step_mask"])
        chance_top = chance.sum(-1).div(2, rounding_mode="floor")  # its segments' middles
        self.metrics[f"{stage}_random"].update(
            chance, *truth, chance_labels, batch["frame_labels"], chance_top
        )
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
            title = f"{self.head.name}: the {len(worst)} lowest-mIoU test videos"
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
        if self.test_videos and self.hparams.timeline_videos > 0 and self.trainer.is_global_zero:
            title = f"{self.head.name}: predicted vs true steps"
            shown = self.test_videos[: self.hparams.timeline_videos]
            log_figure(self.trainer, "test/timeline", timeline_figure(shown, title))
        self.report_worst_videos()

    def expected_initial_loss(self, batch: dict) -> float | None:
        """For `casebook doctor`: the head's loss for uninformative outputs (attend_align: uniform
        frame classes, ln(steps + 1) per frame, plus the monotonic term when weighted). None for
        the interval heads, which have no uninformative output, and zero_shot, which trains nothing."""
        return self.head.expected_initial_loss(batch)

    def configure_optimizers(self):
        hp = self.hparams
        trained = [(self.head, hp.lr)] if self.head.trains else []
        if not self.frozen:
            encoder_lr = hp.encoder_lr
            if encoder_lr is None:
                encoder_lr = hp.lr if hp.pretrained is None else hp.lr / 10
            trained.append((self.encoders, encoder_lr))
        if not trained:
            return None  # zero_shot: Lightning runs the loops without an optimizer
        groups = [{"params": module.parameters(), "lr": lr} for module, lr in trained]
        # None when every encoder parameter is frozen by BackboneFinetuning and no head trains.
        return configure_adamw(self, groups, Optimization.of(hp))


def named_head(name: str, embed_dim: int, options: dict) -> StepHead:
    """A head by its `--model.head` name, from StepAligner's flat options (`options`: its hparams)."""
    if name == "attend_align":
        return AttendAlignHead(
            embed_dim,
            options["hidden"],
            options["layers"],
            options["heads"],
            options["dropout"],
            positional_encoding=options["positional_encoding"],
            max_frames=options["max_frames"],
            init=options["init"],
            label_smoothing=options["label_smoothing"],
            monotonic_loss_weight=options["monotonic_loss_weight"],
        )
    if name == "lstm":
        return LSTMAttentionHead(
            embed_dim,
            options["hidden"],
            options["dropout"],
            options["giou_weight"],
            options["l1_weight"],
        )
    if name == "similarity":
        return SimilarityRegressionHead(
            giou_weight=options["giou_weight"], l1_weight=options["l1_weight"]
        )
    return ZeroShotHead(background_quantile=options["background_quantile"])
