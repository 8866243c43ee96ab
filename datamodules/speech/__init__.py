"""Speech data for wav2vec2 CTC: a synthesized eSpeak NG corpus, NeMo manifests, LibriSpeech."""

from datamodules.speech.datamodule import (
    Augmentation,
    Batching,
    SpeechDataModule,
    SynthesizedCorpus,
)
from datamodules.speech.tts_corpus import TtsCorpus, TtsCorpusConfig, generate_tts_corpus

__all__ = [
    "Augmentation",
    "Batching",
    "SpeechDataModule",
    "SynthesizedCorpus",
    "TtsCorpus",
    "TtsCorpusConfig",
    "generate_tts_corpus",
]
