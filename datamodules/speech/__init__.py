"""Speech data for wav2vec2 CTC: a synthesized eSpeak NG corpus, NeMo manifests, LibriSpeech."""

from datamodules.speech.datamodule import SpeechDataModule
from datamodules.speech.tts_corpus import TtsCorpus, TtsCorpusConfig, generate_tts_corpus

__all__ = ["SpeechDataModule", "TtsCorpus", "TtsCorpusConfig", "generate_tts_corpus"]
