"""The shipped speech configs read one corpus: the pre-trainer's unlabeled audio, the teacher's
training split and the student's must all be the same plan, or one config's test sentences are
another's training audio (a leak into pre-training) and a student distils on what its teacher
never heard."""

from pathlib import Path

import yaml

from datamodules.speech.tts_corpus import TtsCorpusConfig, plan_utterances

REPO = Path(__file__).resolve().parents[3]
CONFIGS = ["speech_pretrain", "speech_teacher", "speech_student", "speech_student_qat"]


def corpus_options(name: str) -> dict:
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    return config["data"]["init_args"]["corpus"]


def test_the_shipped_speech_configs_read_one_corpus():
    corpora = {name: corpus_options(name) for name in CONFIGS}
    assert all(c == corpora["speech_teacher"] for c in corpora.values()), corpora


def test_the_shipped_corpus_keeps_test_sentences_and_voices_out_of_training():
    plans = plan_utterances(TtsCorpusConfig(**corpus_options("speech_teacher")))
    by_split: dict[str, list] = {"train": [], "val": [], "test": []}
    for plan in plans:
        by_split[plan.split].append(plan)
    train_text = {p.text for p in by_split["train"]}
    train_voices = {p.speaker for p in by_split["train"]}
    assert len({p.text for p in by_split["test"]}) == 150
    for split in ("val", "test"):
        assert not train_text & {p.text for p in by_split[split]}
        assert not train_voices & {p.speaker for p in by_split[split]}
