"""Int8 students: accuracy against the float model, which layers go int8, save and reload, the
QAT fine-tuning stage of the distiller, the command line."""

import lightning as L
import pytest
import torch
from transformers import Wav2Vec2ForCTC
from unsafe_checkpoint import unsafe_checkpoint

from casebook.common.errors import DataError
from lightning_modules.speech import Wav2Vec2Distiller, quantize
from lightning_modules.speech.ctc import frame_mask

MODES = ("dynamic", "static", "qat")


@pytest.fixture(scope="module")
def int8_models(float_model, calibration) -> dict[str, Wav2Vec2ForCTC]:
    """The float model quantized each way; QAT observes the calibration batches in training
    mode, without a weight update."""
    torch.manual_seed(0)
    qat = quantize.prepare_qat(float_model)
    with torch.no_grad():
        for batch in calibration:
            qat(batch["input_values"], attention_mask=batch["attention_mask"])
    return {
        "dynamic": quantize.quantize_dynamic(float_model),
        "static": quantize.quantize_static(float_model, calibration),
        "qat": quantize.convert_qat(qat),
    }


def logits_of(model: Wav2Vec2ForCTC, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(batch["input_values"], attention_mask=batch["attention_mask"]).logits


@pytest.mark.parametrize("mode", MODES)
def test_int8_logits_stay_close_to_the_float_models(mode, float_model, int8_models, batch):
    reference = logits_of(float_model, batch)
    logits = logits_of(int8_models[mode], batch)
    valid = frame_mask(float_model, reference.shape[1], batch["attention_mask"])
    agreement = (logits.argmax(-1) == reference.argmax(-1))[valid].float().mean()
    relative_error = (logits - reference)[valid].norm() / reference[valid].norm()
    # measured 0.93-0.98 and 0.02-0.045 over three seeds
    assert agreement >= 0.9, f"{mode}: argmax agreement {agreement:.3f}"
    assert relative_error <= 0.1, f"{mode}: relative error {relative_error:.3f}"


@pytest.mark.parametrize("mode", MODES)
def test_linear_and_convolution_weights_go_int8_and_layer_norms_stay_float(
    mode, float_model, int8_models
):
    """Static and QAT: Linear and the convolutions after the first, torch.ao per channel (float64
    scales, int64 zero points). Dynamic: Linear the same, and every convolution weight-only
    (symmetric: float32 scales, no zero points)."""
    rows = {row.name: row for row in quantize.layer_dtypes(int8_models[mode])}
    linears = [n for n, m in float_model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 4 * 6 + 2  # q, k, v, out, two feed-forward per layer; projection, head
    convolutions = ["wav2vec2.feature_extractor.conv_layers.1.conv", quantize.POSITIONAL_CONV]
    if mode == "dynamic":
        convolutions.append(quantize.FIRST_CONV)
    for name in linears + (convolutions if mode != "dynamic" else []):
        assert rows[name].weight_dtype == "qint8", (name, rows[name])
        assert rows[name].qparams_dtype == "float64/int64", (name, rows[name])  # per channel
    if mode == "dynamic":
        for name in convolutions:
            assert rows[name].kind == "Int8WeightOnlyConv1d", (name, rows[name])
            assert rows[name].weight_dtype == "int8", (name, rows[name])
            assert rows[name].qparams_dtype == "float32/-", (name, rows[name])
    int8 = linears + convolutions
    float_layers = [n for n in rows if n not in int8]
    assert (quantize.FIRST_CONV in float_layers) == (mode != "dynamic")
    for name in float_layers:
        assert rows[name].weight_dtype == "float32" and rows[name].qparams_dtype == "-", name
    layer_norms = [n for n, m in float_model.named_modules() if isinstance(m, torch.nn.LayerNorm)]
    assert layer_norms and set(layer_norms) <= set(float_layers)
    assert set(quantize.quantized_layers(int8_models[mode])) == set(int8)
    report = quantize.layer_dtype_report(int8_models[mode])
    assert "qint8" in report and "float32" in report


def test_a_weight_only_convolution_matches_its_float_convolution_within_int8_rounding():
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(8, 12, kernel_size=5, stride=2, padding=2, groups=4)
    int8 = quantize.Int8WeightOnlyConv1d(conv)
    assert int8.weight_int8.dtype == torch.int8 and int8.weight_int8.abs().max() == 127
    # each weight within half a quantization step of the float one
    step = int8.weight_scale[:, None, None]
    assert ((int8.dequantized_weight() - conv.weight).abs() <= step / 2 + 1e-7).all()
    x = torch.randn(3, 8, 40)
    with torch.no_grad():
        expected = conv(x)
        got = int8(x)
    assert got.shape == expected.shape
    assert (got - expected).norm() / expected.norm() < 0.01


@pytest.mark.parametrize("mode", MODES)
def test_a_saved_int8_student_reloads_with_identical_logits(mode, int8_models, batch, tmp_path):
    directory = quantize.save_quantized(int8_models[mode], tmp_path / mode, mode)
    reloaded = quantize.load_quantized(directory)
    assert torch.equal(logits_of(reloaded, batch), logits_of(int8_models[mode], batch))
    assert (directory / "config.json").exists()


def test_float_weights_of_a_qat_model_restore_the_float_model(float_model, batch):
    restored = quantize.float_weights(quantize.prepare_qat(float_model)).eval()
    torch.testing.assert_close(logits_of(restored, batch), logits_of(float_model, batch))
    assert hasattr(restored.get_submodule(quantize.POSITIONAL_CONV), "parametrizations")


def test_qat_fine_tuning_in_the_distiller_exports_float_and_int8_students(
    teacher_dir, tiny_datamodule, batch, tmp_path
):
    torch.manual_seed(0)
    distiller = Wav2Vec2Distiller(
        teacher=str(teacher_dir), student_init=str(teacher_dir), quantization_aware=True
    )
    assert distiller.layer_map is None and distiller.student.config.num_hidden_layers == 4
    assert quantize.quantized_layers(distiller.student)  # fake-quantized before training
    before = distiller.student.lm_head.layer.weight.clone()
    trainer = L.Trainer(
        max_steps=2,
        limit_val_batches=1,
        val_check_interval=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(distiller, datamodule=tiny_datamodule)
    assert not torch.equal(distiller.student.lm_head.layer.weight, before)
    assert torch.isfinite(trainer.callback_metrics["val/wer"])

    int8 = quantize.load_quantized(tmp_path / "student_int8_qat")
    names = {row.name: row.weight_dtype for row in quantize.layer_dtypes(int8)}
    assert names["lm_head"] == names["wav2vec2.encoder.layers.0.attention.q_proj"] == "qint8"
    exported = Wav2Vec2ForCTC.from_pretrained(tmp_path / "student_hf").eval()
    fake_quantized = distiller.student.eval()
    quantize.observe_ranges(fake_quantized, False)
    # the int8 student computes what the fake-quantized one did; the float export is close too
    reference = logits_of(fake_quantized, batch)
    valid = frame_mask(exported, reference.shape[1], batch["attention_mask"])
    for model in (int8, exported):
        logits = logits_of(model, batch)
        assert (logits.argmax(-1) == reference.argmax(-1))[valid].float().mean() >= 0.9


def test_a_qat_export_refuses_a_checkpoint_holding_pickled_code(teacher_dir, tmp_path):
    distiller = Wav2Vec2Distiller(
        teacher=str(teacher_dir), student_init=str(teacher_dir), quantization_aware=True
    )
    marker = tmp_path / "ran"
    checkpoint = {"state_dict": distiller.state_dict()}
    unsafe = unsafe_checkpoint(tmp_path / "unsafe.ckpt", marker, checkpoint)
    with pytest.raises(DataError, match="unsafe.ckpt: holds pickled objects") as refused:
        distiller.export(tmp_path / "student_hf", checkpoint_path=unsafe)
    assert "\n" not in str(refused.value) and not marker.exists()


def test_a_qat_student_learns_activation_ranges_from_training_batches_only(teacher_dir, batch):
    distiller = Wav2Vec2Distiller(
        teacher=str(teacher_dir), student_init=str(teacher_dir), quantization_aware=True
    )
    ranges = distiller.student.lm_head.quant.activation_post_process
    with torch.no_grad():
        distiller.model_step(batch, "train")
        learned = ranges.scale.clone()
        distiller.model_step({**batch, "input_values": batch["input_values"] * 3}, "val")
        assert torch.equal(ranges.scale, learned)
        distiller.model_step({**batch, "input_values": batch["input_values"] * 3}, "train")
        assert not torch.equal(ranges.scale, learned)


def test_command_line_quantizes_a_folder_and_transcribes_wavs(
    teacher_dir, tiny_cache, tmp_path, capsys
):
    out = tmp_path / "int8"
    quantize.main(["dynamic", str(teacher_dir), str(out)])
    assert "qint8" in capsys.readouterr().out
    wavs = sorted((tiny_cache / "speech").glob("tts-*/wavs/test/*.wav"))[:2]
    quantize.main(["transcribe", str(out), *map(str, wavs)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == list(map(str, wavs))
    assert quantize.transcribe(out, wavs) == quantize.transcribe(out, wavs)  # deterministic
