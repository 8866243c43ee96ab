"""The speech configs as a user runs them: teacher fit and test, then student fit and test."""

import json
from csv import DictReader
from pathlib import Path

import pytest
import soundfile as sf
from casebook_runner import casebook as run_casebook
from transformers import Wav2Vec2ForCTC, pipeline

from casebook.cli import main

REPO = Path(__file__).resolve().parents[3]
TINY_DATA = [
    "--data.corpus.num_train_sentences=12",
    "--data.corpus.num_val_sentences=4",
    "--data.corpus.num_test_sentences=4",
    "--data.batch_size=4",
    "--trainer.max_steps=2",
    "--trainer.val_check_interval=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]
TINY_TEACHER = [
    "--model.network.hidden_size=32",
    "--model.network.num_hidden_layers=4",
    "--model.network.num_attention_heads=2",
    "--model.network.intermediate_size=64",
    "--model.network.conv_dim=[16, 16]",
    "--model.network.num_conv_pos_embeddings=8",
    "--model.network.num_conv_pos_embedding_groups=4",
]


def casebook(*args, env, cwd):
    result = run_casebook(*args, env=env, cwd=cwd, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture
def speech_env(cli_env, tiny_cache):
    """The CLI environment reading the session's tiny corpus, one thread per process."""
    return cli_env | {"CASEBOOK_CACHE": str(tiny_cache), "OMP_NUM_THREADS": "1"}


def test_teacher_then_student_fit_and_test_write_the_four_error_rates(
    speech_env, tmp_path, monkeypatch
):
    csv = str(REPO / "configs/presets/csv.yaml")
    teacher_root, student_root = tmp_path / "teacher", tmp_path / "student"
    teacher_config = str(REPO / "configs/speech_teacher.yaml")
    casebook(
        "fit", "--config", teacher_config, "--config", csv,
        f"--trainer.default_root_dir={teacher_root}", *TINY_DATA, *TINY_TEACHER,
        env=speech_env, cwd=tmp_path,
    )  # fmt: skip
    teacher = Wav2Vec2ForCTC.from_pretrained(teacher_root / "hf")
    assert teacher.config.num_hidden_layers == 4
    curve = (teacher_root / "reports" / "validation_curve.csv").read_text().splitlines()
    assert {"step", "minutes", "val/wer", "val/cer"} <= set(curve[0].split(",")) and len(curve) > 1
    # the teacher's test in this process (an interpreter start costs more than the test itself)
    monkeypatch.setenv("CASEBOOK_CACHE", speech_env["CASEBOOK_CACHE"])
    main([
        "test", "--config", teacher_config, "--config", csv,
        f"--trainer.default_root_dir={teacher_root}", *TINY_DATA, *TINY_TEACHER,
        "--ckpt_path", "last",
    ])  # fmt: skip
    teacher_metrics = json.loads((teacher_root / "test_metrics.json").read_text())
    assert {"test/wer", "test/cer", "test/wer_beam", "test/wer_lm", "test/cer_lm"} <= (
        teacher_metrics.keys()
    )
    # the export carries the training transcripts' language model, which the pipeline decodes with
    assert (teacher_root / "hf" / "language_model" / "train-3gram.arpa").is_file()
    wav = next(Path(speech_env["CASEBOOK_CACHE"]).glob("speech/tts-*/wavs/test/*.wav"))
    audio, rate = sf.read(wav, dtype="float32")
    asr = pipeline("automatic-speech-recognition", model=str(teacher_root / "hf"), device="cpu")
    assert type(asr.decoder).__name__ == "BeamSearchDecoderCTC"
    assert isinstance(asr({"raw": audio, "sampling_rate": rate})["text"], str)

    student = [
        "--config", str(REPO / "configs/speech_student.yaml"), "--config", csv,
        f"--trainer.default_root_dir={student_root}", f"--model.teacher={teacher_root / 'hf'}",
        *TINY_DATA,
    ]  # fmt: skip
    casebook("fit", *student, env=speech_env, cwd=tmp_path)
    exported = Wav2Vec2ForCTC.from_pretrained(student_root / "student_hf")
    assert exported.config.num_hidden_layers == 1  # the config's one-layer student
    assert (student_root / "checkpoints" / "last.ckpt").exists()

    casebook("test", *student, "--ckpt_path", "best", env=speech_env, cwd=tmp_path)
    metrics = json.loads((student_root / "test_metrics.json").read_text())
    for key in ("test/wer", "test/cer", "test/teacher_wer", "test/teacher_cer", "test/wer_lm",
                "test/teacher_wer_lm", "test/wer_beam", "test/teacher_wer_beam"):  # fmt: skip
        assert isinstance(metrics[key], float) and metrics[key] >= 0.0, key
    for key in ("test/kl_loss", "test/ctc_loss", "test/hidden_l2", "test/hidden_cos"):
        assert key in metrics

    # error analysis: the highest-WER test utterances, worst first, with both transcripts
    for root, columns in (
        (teacher_root, {"wer", "transcript"}),
        (student_root, {"wer", "teacher_wer", "transcript", "teacher_transcript"}),
    ):
        rows = list(DictReader((root / "reports" / "test-worst_utterances.csv").open()))
        assert rows and columns | {"id", "reference"} <= rows[0].keys()
        rates = [float(row["wer"]) for row in rows]
        assert rates == sorted(rates, reverse=True) and all(row["reference"] for row in rows)
        assert (root / "figures" / "test-worst_utterances.png").stat().st_size > 5_000


def test_the_student_without_its_teacher_says_how_to_train_one_in_one_line(speech_env, tmp_path):
    result = run_casebook(
        "fit", "--config", str(REPO / "configs/speech_student.yaml"),
        f"--model.teacher={tmp_path / 'no-teacher'}", f"--trainer.default_root_dir={tmp_path}",
        env=speech_env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("casebook: error: teacher ") and "no-teacher" in last
    assert "configs/speech_teacher.yaml" in last and "Traceback" not in result.stderr
    assert not (tmp_path / "wandb").exists()  # stopped before any logger started
