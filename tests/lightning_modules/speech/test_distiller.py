"""Wav2Vec2Distiller: student initialization, the loss terms, the frozen teacher, the export."""

import lightning as L
import pytest
import soundfile as sf
import torch
from transformers import Wav2Vec2ForCTC, pipeline

from lightning_modules.speech import Wav2Vec2Distiller, resolve_layer_map
from lightning_modules.speech.ctc import frame_mask, greedy_transcripts


def assert_same_tensors(a: torch.nn.Module, b: torch.nn.Module) -> None:
    a_state, b_state = a.state_dict(), b.state_dict()
    assert a_state.keys() == b_state.keys()
    for key in a_state:
        assert torch.equal(a_state[key], b_state[key]), key


def test_layer_maps_pick_alternate_or_first_teacher_layers():
    assert resolve_layer_map("alternate", 12) == [1, 3, 5, 7, 9, 11]
    assert resolve_layer_map("alternate", 12, 4) == [2, 5, 8, 11]
    assert resolve_layer_map("first_k", 12, 2) == [0, 1]
    assert resolve_layer_map([0, 5, 11], 12) == [0, 5, 11]
    with pytest.raises(ValueError, match="teacher layers"):
        resolve_layer_map([0, 12], 12)


@pytest.mark.parametrize(
    ("layer_map", "num_layers", "expected"),
    [("alternate", None, [1, 3]), ("first_k", 3, [0, 1, 2]), ([3, 0], None, [3, 0])],
)
def test_student_copies_the_mapped_teacher_layers(teacher_dir, layer_map, num_layers, expected):
    distiller = Wav2Vec2Distiller(
        teacher=str(teacher_dir), student_layer_map=layer_map, student_num_layers=num_layers
    )
    student, teacher = distiller.student.wav2vec2, distiller.teacher.wav2vec2
    assert distiller.layer_map == expected
    assert len(student.encoder.layers) == len(expected)
    for student_index, teacher_index in enumerate(expected):
        assert_same_tensors(
            student.encoder.layers[student_index], teacher.encoder.layers[teacher_index]
        )
    for name in ("feature_extractor", "feature_projection"):
        assert_same_tensors(getattr(student, name), getattr(teacher, name))
    assert_same_tensors(student.encoder.pos_conv_embed, teacher.encoder.pos_conv_embed)
    assert_same_tensors(distiller.student.lm_head, distiller.teacher.lm_head)
    assert distiller.student.config.layerdrop == 0.0


@pytest.mark.parametrize(("teacher_masks", "student_masks"), [(0.05, 0.0), (0.0, 0.05)])
def test_students_build_from_teachers_with_or_without_specaugment(
    teacher_dir, tmp_path, teacher_masks, student_masks
):
    """SpecAugment's mask vector exists only in a model that masks: a student that does not
    mask builds from a teacher trained with masks, and the other way round."""
    teacher = Wav2Vec2ForCTC.from_pretrained(teacher_dir, mask_time_prob=teacher_masks)
    assert hasattr(teacher.wav2vec2, "masked_spec_embed") == (teacher_masks > 0)
    teacher.save_pretrained(tmp_path / "teacher")
    distiller = Wav2Vec2Distiller(teacher=str(tmp_path / "teacher"), mask_time_prob=student_masks)
    for student_index, teacher_index in enumerate(distiller.layer_map):
        assert_same_tensors(
            distiller.student.wav2vec2.encoder.layers[student_index],
            distiller.teacher.wav2vec2.encoder.layers[teacher_index],
        )
    assert hasattr(distiller.student.wav2vec2, "masked_spec_embed") == (student_masks > 0)


def test_kl_is_zero_when_the_student_equals_the_teacher_and_positive_otherwise(teacher_dir, batch):
    whole = Wav2Vec2Distiller(teacher=str(teacher_dir), student_layer_map=[0, 1, 2, 3]).eval()
    half = Wav2Vec2Distiller(teacher=str(teacher_dir)).eval()
    with torch.no_grad():
        same, smaller = whole.model_step(batch, "val"), half.model_step(batch, "val")
    for term in ("kl_loss", "hidden_l2", "hidden_cos"):
        assert same[term].abs() < 1e-5, term
        assert smaller[term] > 1e-4, term


def test_loss_terms_are_weighted_by_alpha_beta_gamma(teacher_dir, batch):
    distiller = Wav2Vec2Distiller(teacher=str(teacher_dir)).eval()

    def loss_with(kl: float, ctc: float, hidden: float) -> dict:
        distiller.hparams.update(kl_weight=kl, ctc_weight=ctc, hidden_weight=hidden)
        with torch.no_grad():
            return distiller.model_step(batch, "val")

    terms = loss_with(1.0, 1.0, 1.0)
    assert all(torch.isfinite(terms[k]) and terms[k] > 0 for k in ("kl_loss", "ctc_loss"))
    torch.testing.assert_close(loss_with(1.0, 0.0, 0.0)["loss"], terms["kl_loss"])
    torch.testing.assert_close(loss_with(0.0, 1.0, 0.0)["loss"], terms["ctc_loss"])
    torch.testing.assert_close(
        loss_with(0.0, 0.0, 1.0)["loss"], terms["hidden_l2"] + terms["hidden_cos"]
    )
    mixed = loss_with(0.5, 2.0, 3.0)["loss"]
    expected = 0.5 * terms["kl_loss"] + 2.0 * terms["ctc_loss"]
    expected = expected + 3.0 * (terms["hidden_l2"] + terms["hidden_cos"])
    torch.testing.assert_close(mixed, expected)


def test_temperature_scales_the_kl_term(teacher_dir, batch):
    distiller = Wav2Vec2Distiller(teacher=str(teacher_dir), temperature=1.0).eval()
    with torch.no_grad():
        cold = distiller.model_step(batch, "val")["kl_loss"]
        distiller.hparams.temperature = 4.0
        hot = distiller.model_step(batch, "val")["kl_loss"]
    assert torch.isfinite(hot) and not torch.isclose(cold, hot)


def test_intermediate_hidden_pairs_are_matched(teacher_dir, batch):
    # student layer 1 is teacher layer 1 (first_k): that pair matches exactly, layer 2 vs 4 does not
    exact = Wav2Vec2Distiller(
        teacher=str(teacher_dir), student_layer_map="first_k", hidden_layer_pairs=[(1, 1)]
    ).eval()
    apart = Wav2Vec2Distiller(
        teacher=str(teacher_dir), student_layer_map="first_k", hidden_layer_pairs=[(1, 1), (2, 4)]
    ).eval()
    with torch.no_grad():
        assert exact.model_step(batch, "val")["hidden_l2"] < 1e-6
        assert apart.model_step(batch, "val")["hidden_l2"] > 1e-4


class RecordTeacherMode(L.Callback):
    def __init__(self) -> None:
        self.teacher_training: list[bool] = []
        self.student_training: list[bool] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.teacher_training.append(module.teacher.training)
        self.student_training.append(module.student.training)

    def on_after_backward(self, trainer, module) -> None:
        assert all(p.grad is None for p in module.teacher.parameters())
        assert any(p.grad is not None for p in module.student.parameters())


def test_teacher_stays_frozen_in_eval_mode_through_fit_and_the_student_is_exported(
    teacher_dir, tiny_datamodule, tmp_path
):
    distiller = Wav2Vec2Distiller(teacher=str(teacher_dir))
    before = {k: v.clone() for k, v in distiller.teacher.state_dict().items()}
    student_before = distiller.student.lm_head.weight.clone()
    recorder = RecordTeacherMode()
    trainer = L.Trainer(
        max_steps=3,
        limit_val_batches=1,
        val_check_interval=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[recorder],
    )
    trainer.fit(distiller, datamodule=tiny_datamodule)
    assert recorder.teacher_training == [False] * 3
    assert recorder.student_training == [True] * 3
    assert not any(p.requires_grad for p in distiller.teacher.parameters())
    for key, value in distiller.teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(distiller.student.lm_head.weight, student_before)
    for name in ("train/kl_loss", "train/ctc_loss", "train/hidden_l2", "train/hidden_cos"):
        assert torch.isfinite(trainer.callback_metrics[name])
    for name in ("val/wer", "val/cer", "val/teacher_wer", "val/teacher_cer", "val/kl_loss"):
        assert name in trainer.callback_metrics
    exported = Wav2Vec2ForCTC.from_pretrained(tmp_path / "student_hf")
    assert exported.config.num_hidden_layers == 2


def test_a_student_read_from_a_folder_starts_in_train_mode_like_a_fresh_one(teacher_dir):
    distiller = Wav2Vec2Distiller(teacher=str(teacher_dir), student_init=str(teacher_dir))
    assert all(module.training for module in distiller.student.modules())
    assert not distiller.teacher.training


def test_checkpoints_hold_the_student_only_and_restore_strictly(teacher_dir):
    distiller = Wav2Vec2Distiller(teacher=str(teacher_dir))
    checkpoint = {"state_dict": distiller.state_dict()}
    distiller.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and not any(
        k.startswith("teacher.") for k in checkpoint["state_dict"]
    )
    distiller.on_load_checkpoint(checkpoint)
    distiller.load_state_dict(checkpoint["state_dict"], strict=True)


def test_exported_student_transcribes_a_wav_in_the_transformers_pipeline(
    teacher_dir, tiny_cache, tmp_path
):
    distiller = Wav2Vec2Distiller(teacher=str(teacher_dir)).eval()
    directory = distiller.export(tmp_path / "student_hf")
    wav = next((tiny_cache / "speech").glob("tts-*/wavs/test/*.wav"))
    # the pipeline opens file names with ffmpeg, absent here: read the wav, hand over the samples
    audio, rate = sf.read(wav, dtype="float32")
    asr = pipeline("automatic-speech-recognition", model=str(directory), device="cpu")
    text = asr({"raw": audio, "sampling_rate": rate})["text"]

    # the same words the Lightning module writes for that file
    features = distiller.processor(audio, sampling_rate=rate, return_tensors="pt")
    attention_mask = torch.ones_like(features.input_values, dtype=torch.long)
    with torch.no_grad():
        logits = distiller(features.input_values, attention_mask)
    valid = frame_mask(distiller.student, logits.shape[1], attention_mask)
    assert isinstance(text, str) and text
    assert text == greedy_transcripts(logits, valid, distiller.processor.tokenizer)[0]


def test_a_teacher_with_another_vocabulary_is_refused(teacher_dir):
    with pytest.raises(ValueError, match="vocabulary"):
        Wav2Vec2Distiller(teacher=str(teacher_dir), vocab_size=40)
    with pytest.raises(ValueError, match="casebook fit"):
        Wav2Vec2Distiller(teacher=str(teacher_dir / "missing"))
