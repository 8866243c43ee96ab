import hashlib
import json

import numpy as np
import pytest
import soundfile as sf

from datamodules.speech import tts_corpus
from datamodules.speech.tts_corpus import TtsCorpusConfig, generate_tts_corpus


def _rows(corpus, split):
    return [json.loads(line) for line in corpus.manifests[split].read_text().splitlines()]


def _audio_hashes(corpus):
    return {
        row["id"]: hashlib.sha256((corpus.root / row["audio_filepath"]).read_bytes()).hexdigest()
        for split in corpus.manifests
        for row in _rows(corpus, split)
    }


def test_generation_is_deterministic_for_the_same_params(tiny_corpus, tiny_config, tmp_path):
    again = generate_tts_corpus(tiny_config, tmp_path)
    assert again.generated
    assert again.root.name == tiny_corpus.root.name
    assert _audio_hashes(again) == _audio_hashes(tiny_corpus)


def test_second_call_reuses_the_cache_without_synthesizing(
    tiny_corpus, tiny_config, tiny_cache, monkeypatch
):
    def no_synthesis(*args, **kwargs):
        raise AssertionError("synthesized although the corpus is cached")

    monkeypatch.setattr(tts_corpus, "synthesize", no_synthesis)
    again = generate_tts_corpus(tiny_config, tiny_cache)
    assert not again.generated
    assert again.root == tiny_corpus.root
    assert again.stats["utterances"] == 20


def test_changed_params_get_their_own_corpus(tiny_config):
    other = TtsCorpusConfig(**{**tiny_config.__dict__, "seed": 1})
    assert other.key() != tiny_config.key()


def test_splits_are_disjoint_by_speaker_and_by_sentence(tiny_corpus):
    rows = {split: _rows(tiny_corpus, split) for split in ("train", "val", "test")}
    assert [len(rows[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    speakers = {s: {r["speaker"] for r in rows[s]} for s in rows}
    texts = {s: {r["text"] for r in rows[s]} for s in rows}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not speakers[a] & speakers[b]
        assert not texts[a] & texts[b]
    assert speakers["test"] <= set(tts_corpus.TEST_VOICES)


def test_overlapping_voice_lists_are_refused():
    with pytest.raises(ValueError, match="disjoint"):
        TtsCorpusConfig(train_voices=("m1", "m3"), test_voices=("m3",))


def test_audio_is_16khz_mono_speech(tiny_corpus):
    for row in _rows(tiny_corpus, "train"):
        path = tiny_corpus.root / row["audio_filepath"]
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        samples, _ = sf.read(str(path))
        assert abs(len(samples) / 16000 - row["duration"]) < 1e-3
        assert 0.5 < row["duration"] < 15
        assert np.sqrt(np.mean(samples**2)) > 0.01  # not silence


def test_worker_processes_write_the_same_corpus_as_serial_synthesis(tmp_path):
    config = TtsCorpusConfig(num_train_sentences=6, num_val_sentences=2, num_test_sentences=2)
    serial = generate_tts_corpus(config, tmp_path / "serial", workers=1)
    pooled = generate_tts_corpus(config, tmp_path / "pooled", workers=2)
    for split in serial.manifests:
        assert pooled.manifests[split].read_bytes() == serial.manifests[split].read_bytes()
    wavs = sorted(p.relative_to(serial.root) for p in serial.root.rglob("*.wav"))
    assert wavs == sorted(p.relative_to(pooled.root) for p in pooled.root.rglob("*.wav"))
    assert len(wavs) == 10
    for wav in wavs:
        assert (pooled.root / wav).read_bytes() == (serial.root / wav).read_bytes()


def test_small_corpora_are_synthesized_without_worker_processes(tmp_path, monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("started worker processes for a tiny corpus")

    monkeypatch.setattr(tts_corpus, "ProcessPoolExecutor", no_pool)
    config = TtsCorpusConfig(num_train_sentences=1, num_val_sentences=1, num_test_sentences=1)
    assert generate_tts_corpus(config, tmp_path).stats["utterances"] == 3
