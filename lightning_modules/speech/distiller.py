"""Wav2Vec2Distiller: a shallower wav2vec2 CTC student distilled from a frozen teacher.

    casebook fit  --config configs/speech_student.yaml
    casebook test --config configs/speech_student.yaml --ckpt_path best

The teacher is a `Wav2Vec2ForCTC` loaded from `--model.teacher` (the folder `casebook fit --config
configs/speech_teacher.yaml` exports, or e.g. `facebook/wav2vec2-base-960h` when it is cached).
The student has the teacher's shape with fewer transformer layers (half by default), initialized
from a subset of the teacher's layers: every other one, ending at the last (DistilBERT, Sanh et
al. 2019) or the first k (DistilHuBERT, Chang et al. 2022), or any `student_layer_map`. The
feature encoder, feature projection, positional convolution, final LayerNorm and CTC head are
copied as they are.

Loss, per batch (frames are the output frames of real samples, never padding):
    kl_weight     (alpha) * T^2 * KL(teacher_T || student_T) on the CTC output distributions
  + ctc_weight    (beta)  * CTC(student, labels)
  + hidden_weight (gamma) * (MSE + (1 - cosine)) between paired student and teacher hidden states
Each term is logged (`train/kl_loss`, `train/ctc_loss`, `train/hidden_l2`, `train/hidden_cos`,
`train/loss`, the same under `val/` and `test/`), with greedy-CTC WER and CER of the student
(`val/wer`, `val/cer`) and of the teacher (`val/teacher_wer`, `val/teacher_cer`).
At the end of fit the student is exported with its processor to `<default_root_dir>/student_hf`.

Quantization-aware fine-tuning (`configs/speech_student_qat.yaml`): `student_init` starts the
student from an already distilled one instead of the teacher's layers, and
`quantization_aware=True` fine-tunes it with fake int8 quantization (`quantize.prepare_qat`) under
the same loss. The export then writes the float weights to `student_hf` and the converted int8
student (`quantize.save_quantized`, reload with `quantize.load_quantized`) to
`<default_root_dir>/student_int8_qat`.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import Wav2Vec2ForCTC
from transformers.modeling_outputs import CausalLMOutput

from casebook.common.errors import DataError
from datamodules.hparams import from_plain, load_checkpoint, plain_hyperparameters
from lightning_modules.common import Schedule
from lightning_modules.speech.beam_search import BeamSearchConfig
from lightning_modules.speech.ctc import (
    CTCSpeechModule,
    export_pretrained,
    frame_mask,
    too_short_for_ctc,
    warn_too_short,
)

LayerMap = list[int] | Literal["alternate", "first_k"]


def _quantize():
    """`lightning_modules.speech.quantize`, imported on first use: imported with this package, it
    would already be loaded when `python -m lightning_modules.speech.quantize` runs it again."""
    from lightning_modules.speech import quantize

    return quantize


_TEACHER_LAYER = re.compile(r"^wav2vec2\.encoder\.layers\.(\d+)\.(.+)$")


def resolve_layer_map(
    layer_map: LayerMap, teacher_layers: int, student_layers: int | None = None
) -> list[int]:
    """Teacher layer index of each student layer.

    `alternate`: evenly spaced, ending at the teacher's last layer (12 -> 6: 1, 3, 5, 7, 9, 11).
    `first_k`: the first `student_layers`. A list is taken as it is. Default size: half, rounded up.
    """
    if isinstance(layer_map, str):
        count = student_layers or math.ceil(teacher_layers / 2)
        if not 1 <= count <= teacher_layers:
            raise ValueError(f"student_num_layers {count} outside 1..{teacher_layers}")
        if layer_map == "first_k":
            return list(range(count))
        if layer_map == "alternate":
            return [round((i + 1) * teacher_layers / count) - 1 for i in range(count)]
        raise ValueError(f"unknown student_layer_map {layer_map!r}: a list, alternate or first_k")
    layer_map = [int(i) for i in layer_map]
    if not layer_map or not all(0 <= i < teacher_layers for i in layer_map):
        raise ValueError(
            f"student_layer_map {layer_map} must name teacher layers 0..{teacher_layers - 1}"
        )
    if student_layers is not None and student_layers != len(layer_map):
        raise ValueError(
            f"student_num_layers {student_layers} != len(student_layer_map) {len(layer_map)}"
        )
    return layer_map


def student_from_teacher(
    teacher: Wav2Vec2ForCTC, layer_map: list[int], **config_overrides
) -> Wav2Vec2ForCTC:
    """A `Wav2Vec2ForCTC` with `len(layer_map)` transformer layers, student layer i a copy of
    teacher layer `layer_map[i]` and every other weight a copy of the teacher's."""
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layer_map)
    for key, value in config_overrides.items():
        setattr(config, key, value)
    student = Wav2Vec2ForCTC(config)
    source_of = {teacher_index: [] for teacher_index in layer_map}
    for student_index, teacher_index in enumerate(layer_map):
        source_of[teacher_index].append(student_index)
    state = {}
    for key, value in teacher.state_dict().items():
        if match := _TEACHER_LAYER.match(key):
            for student_index in source_of.get(int(match[1]), []):
                state[f"wav2vec2.encoder.layers.{student_index}.{match[2]}"] = value.clone()
        else:
            state[key] = value.clone()
    missing, unexpected = student.load_state_dict(state, strict=False)
    # SpecAugment's learned mask vector exists only where mask_time_prob or mask_feature_prob > 0:
    # a student that masks gets a fresh one from a teacher trained without masks; a student that
    # does not mask drops the one of a teacher trained with them
    spec = {"wav2vec2.masked_spec_embed"}
    if set(unexpected) - spec or set(missing) - spec:
        raise RuntimeError(f"student/teacher mismatch: missing {missing}, unexpected {unexpected}")
    return student


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` (batch, frames) over the frames where `mask` is True."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def distribution_kl(
    teacher_logits: Tensor, student_logits: Tensor, valid: Tensor, temperature: float
) -> Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)) per frame, averaged over valid frames
    (Hinton et al. 2015: T^2 keeps the gradient scale independent of T)."""
    teacher_logp = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    student_logp = F.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = F.kl_div(student_logp, teacher_logp, log_target=True, reduction="none").sum(-1)
    return masked_mean(kl, valid) * temperature**2


def encoder_states(model: Wav2Vec2ForCTC, output: CausalLMOutput) -> list[Tensor]:
    """Hidden states by layer: 0 the transformer's input, i the output of layer i, the last one
    as the CTC head reads it (pre-LayerNorm models apply their final LayerNorm after the layers)."""
    states = list(output.hidden_states)
    if model.config.do_stable_layer_norm:
        states[-1] = model.wav2vec2.encoder.layer_norm(states[-1])
    return states


class Wav2Vec2Distiller(CTCSpeechModule):
    """Distils a wav2vec2 CTC teacher into a shallower student (KL + CTC + hidden-state losses)."""

    recognizer_name = "student"
    export_name = "student_hf"
    decoded = ("", "teacher_")
    logged_terms = ("kl_loss", "ctc_loss", "hidden_l2", "hidden_cos", "loss")

    def __init__(
        self,
        teacher: str = "runs/speech_teacher/hf",
        vocab_size: int = 32,
        pad_token_id: int = 0,
        student_num_layers: int | None = None,
        student_layer_map: LayerMap = "alternate",
        temperature: float = 2.0,
        kl_weight: float = 1.0,
        ctc_weight: float = 1.0,
        hidden_weight: float = 1.0,
        hidden_layer_pairs: list[tuple[int, int]] | None = None,
        mask_time_prob: float = 0.0,
        mask_feature_prob: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 50,
        lr_schedule: Schedule = "linear",
        export_dir: str | None = None,
        export_best: bool = True,
        worst_utterances: int = 20,
        student_init: str | None = None,
        quantization_aware: bool = False,
        int8_export_dir: str | None = None,
        beam_search: BeamSearchConfig = BeamSearchConfig(),
    ) -> None:
        """
        Args:
            teacher: a `save_pretrained` folder or hub id of a `Wav2Vec2ForCTC`
                (`runs/speech_teacher/hf` after `casebook fit --config configs/speech_teacher.yaml`).
            vocab_size: CTC output size (linked from the datamodule); must equal the teacher's.
            pad_token_id: the CTC blank, the tokenizer's pad id (linked from the datamodule).
            student_num_layers: student transformer layers; default half the teacher's, rounded up.
            student_layer_map: teacher layer copied into each student layer: a list of indices,
                `alternate` (DistilBERT: every other layer, ending at the last) or `first_k`
                (DistilHuBERT: the first layers).
            temperature: softmax temperature T of the KL term.
            kl_weight: alpha, weight of T^2 * KL(teacher || student) on the CTC distributions.
            ctc_weight: beta, weight of the student's CTC loss on the labels.
            hidden_weight: gamma, weight of MSE + (1 - cosine) between paired hidden states.
            hidden_layer_pairs: (student, teacher) hidden-state indices to match, 0 being the
                transformer input and i the output of layer i; default the last layer of each.
            mask_time_prob: SpecAugment time masking of the student's input in training
                (the teacher always sees the clean input).
            mask_feature_prob: SpecAugment channel (frequency) masking of the student's features
                in training, likewise.
            lr: AdamW peak learning rate.
            weight_decay: AdamW weight decay of weight matrices and kernels (not biases or norms).
            warmup_steps: linear warmup steps before the schedule.
            lr_schedule: after warm-up: linear (to zero at the last step), constant, cosine,
                flat_cosine or one_cycle.
            export_dir: where fit exports the student; default `<default_root_dir>/student_hf`.
            export_best: export the best checkpoint (monitored metric) rather than the last weights.
            worst_utterances: error analysis after test: this many highest-WER utterances,
                with their transcripts, in reports/ (a table and a figure).
            student_init: start from this `save_pretrained` student (e.g. a distilled
                `runs/speech_student/student_hf`) instead of copying teacher layers; the layer map
                and `student_num_layers` are then ignored.
            quantization_aware: fine-tune with fake int8 quantization (QAT) of the student's Linear
                and convolution layers, and export the converted int8 student too.
            int8_export_dir: where a quantization-aware fit exports the int8 student; default
                `student_int8_qat` next to the float export.
            beam_search: `casebook test` also decodes student and teacher by beam search,
                without and with a word n-gram language model of the training transcripts
                (`test/wer_lm`, `test/teacher_wer_lm`), and fit saves that model with the export.
        """
        super().__init__()
        self.save_hyperparameters()
        plain_hyperparameters(self)  # checkpoints stay loadable with weights_only=True
        beam_search = from_plain(beam_search, BeamSearchConfig)
        try:
            self.teacher = Wav2Vec2ForCTC.from_pretrained(teacher)
        except (OSError, ValueError):  # ValueError: not even a valid hub id
            raise DataError(
                f"teacher {teacher}: neither a save_pretrained folder nor a cached hub model; "
                "train one with `casebook fit --config configs/speech_teacher.yaml` (or pass "
                "--model.teacher <folder or hub id>)"
            ) from None
        if self.teacher.config.vocab_size != vocab_size:
            raise ValueError(
                f"teacher {teacher!r} has {self.teacher.config.vocab_size} CTC outputs, "
                f"the data's vocabulary has {vocab_size}"
            )
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        teacher_layers = self.teacher.config.num_hidden_layers
        student_config = {
            "layerdrop": 0.0,  # every student layer is trained and matched on every step
            "mask_time_prob": mask_time_prob,
            "mask_feature_prob": mask_feature_prob,
            "ctc_zero_infinity": True,
            "ctc_loss_reduction": "mean",
        }
        if student_init is None:
            self.layer_map = resolve_layer_map(
                student_layer_map, teacher_layers, student_num_layers
            )
            self.student = student_from_teacher(self.teacher, self.layer_map, **student_config)
        else:
            # an initialized student: which teacher layers it came from is not known here
            self.layer_map = None
            self.student = self._load_student(student_init, student_config)
        if quantization_aware:
            self.student = _quantize().prepare_qat(self.student)
        student_layers = self.student.config.num_hidden_layers
        self.hidden_layer_pairs = [
            tuple(pair) for pair in hidden_layer_pairs or [(student_layers, teacher_layers)]
        ]
        for s, t in self.hidden_layer_pairs:
            if not (0 <= s <= student_layers and 0 <= t <= teacher_layers):
                raise ValueError(f"hidden_layer_pairs entry {(s, t)} outside the models' layers")
        self.init_ctc(worst_utterances, beam_search, teacher)

    def _load_student(self, student_init: str, config: dict) -> Wav2Vec2ForCTC:
        try:
            # train mode as a fresh student: from_pretrained returns eval mode (no dropout,
            # layerdrop or SpecAugment), and Lightning does not call train() at fit start
            student = Wav2Vec2ForCTC.from_pretrained(student_init, **config).train()
        except (OSError, ValueError):
            raise DataError(
                f"student_init {student_init}: not a save_pretrained folder; distill one with "
                "`casebook fit --config configs/speech_student.yaml`"
            ) from None
        for key in ("vocab_size", "hidden_size"):  # the KL and hidden-state losses compare them
            if getattr(student.config, key) != getattr(self.teacher.config, key):
                raise ValueError(
                    f"student_init {student_init!r} has {key} {getattr(student.config, key)}, "
                    f"the teacher {getattr(self.teacher.config, key)}"
                )
        return student

    # ------------------------------------------------------------------ the frozen teacher

    def train(self, mode: bool = True) -> Wav2Vec2Distiller:
        """Lightning switches the module to train mode; the teacher stays in eval mode (no
        dropout, no SpecAugment, no layerdrop)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The teacher is frozen and reloaded from `teacher`: checkpoints hold the student only.
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("teacher.")]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        teacher_state = {f"teacher.{k}": v for k, v in self.teacher.state_dict().items()}
        checkpoint["state_dict"] = {**teacher_state, **checkpoint["state_dict"]}

    # ------------------------------------------------------------------ losses

    def _observe_ranges(self, enabled: bool) -> None:
        # A quantization-aware student learns its activation ranges from training batches only.
        # Set per step, not in train(): Lightning restores module modes after validation
        # without calling train().
        if self.hparams.quantization_aware:
            _quantize().observe_ranges(self.student, enabled)

    def model_step(self, batch: dict, stage: str) -> dict[str, Tensor]:
        """Every loss term, the total and both models' logits for one batch (train, val, test)."""
        self._observe_ranges(stage == "train")
        inputs, mask, labels = batch["input_values"], batch["attention_mask"], batch["labels"]
        with torch.no_grad():
            teacher_out = self.teacher(inputs, attention_mask=mask, output_hidden_states=True)
        student_out = self.student(
            inputs, attention_mask=mask, labels=labels, output_hidden_states=True
        )
        warn_too_short(self, batch, too_short_for_ctc(self.student, mask, labels), stage)
        valid = frame_mask(self.student, student_out.logits.shape[1], mask)  # (batch, frames)

        temperature = self.hparams.temperature
        kl = distribution_kl(teacher_out.logits, student_out.logits, valid, temperature)
        student_states = encoder_states(self.student, student_out)
        teacher_states = encoder_states(self.teacher, teacher_out)
        l2, cos = [], []
        for s, t in self.hidden_layer_pairs:
            student_h, teacher_h = student_states[s].float(), teacher_states[t].float()
            l2.append(masked_mean((student_h - teacher_h).pow(2).mean(-1), valid))
            cos.append(masked_mean(1 - F.cosine_similarity(student_h, teacher_h, dim=-1), valid))
        hidden_l2, hidden_cos = torch.stack(l2).mean(), torch.stack(cos).mean()

        hp = self.hparams
        loss = (
            hp.kl_weight * kl
            + hp.ctc_weight * student_out.loss
            + hp.hidden_weight * (hidden_l2 + hidden_cos)
        )
        return {
            "loss": loss,
            "kl_loss": kl,
            "ctc_loss": student_out.loss,
            "hidden_l2": hidden_l2,
            "hidden_cos": hidden_cos,
            "logits": {"": student_out.logits, "teacher_": teacher_out.logits},
            "valid_frames": valid,
        }

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """The student's greedy transcripts, for `casebook predict` with a prediction writer."""
        self._observe_ranges(False)
        return super().predict_step(batch, batch_idx)

    # ------------------------------------------------------------------ export

    def export(self, directory: str | Path, checkpoint_path: str | Path | None = None) -> Path:
        """Write the float student (this module's weights, or a checkpoint's) and its processor
        to `directory` with `save_pretrained`; a quantization-aware student also as int8 to
        `int8_export_dir` (default `student_int8_qat` next to `directory`)."""
        if not self.hparams.quantization_aware:
            return super().export(directory, checkpoint_path)
        student = self.student
        if checkpoint_path:
            state = load_checkpoint(checkpoint_path)["state_dict"]
            prefix = "student."
            weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            student = copy.deepcopy(student)
            student.load_state_dict(weights)
        quantize = _quantize()
        path = export_pretrained(quantize.float_weights(student), self.processor, directory)
        int8_dir = self.hparams.int8_export_dir or Path(directory).parent / "student_int8_qat"
        quantize.save_quantized(quantize.convert_qat(student), int8_dir, "qat", self.processor)
        print(f"exported the int8 (QAT) student to {int8_dir}")
        return path
