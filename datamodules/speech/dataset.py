"""Utterances -> waveforms -> padded wav2vec2 batches."""

import functools

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch.utils.data import Dataset
from transformers import Wav2Vec2Processor

from casebook.common.errors import DataError, first_line
from datamodules.resume import EpochItem, item_generator
from datamodules.speech.augment import WaveformAugment
from datamodules.speech.sources import BadInputPolicy, Utterance

LABEL_PAD = -100  # ignored by the CTC loss in HF's Wav2Vec2ForCTC


@functools.cache
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig, new)


def load_waveform(path, sample_rate: int) -> torch.Tensor:
    """Mono float32 samples at `sample_rate`, (samples,)."""
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wave = torch.from_numpy(samples.mean(axis=1))
    if rate != sample_rate:
        with torch.no_grad():
            wave = _resampler(rate, sample_rate)(wave)
    return wave


class SpeechDataset(Dataset):
    """Items `{"id", "text", "waveform" (samples,), "labels" [ids]}` for checked utterances.

    `augment` runs on every read, drawing from `item_generator(seed, epoch, index)`: the same
    draws in the main process or a DataLoader worker, so a resumed run augments as the
    uninterrupted one did. The training loader (`ResumableDataLoader`) indexes it with
    `EpochItem(epoch, index)`, so each epoch draws anew; a plain index draws as epoch 0. With
    `fixed_noise` (noisy evaluation) the epoch is ignored: every epoch sees the same noise.
    """

    keyed_by_epoch = True  # see datamodules.resume

    def __init__(
        self,
        utterances: list[Utterance],
        split: str,
        sample_rate: int = 16000,
        augment: WaveformAugment | None = None,
        fixed_noise: bool = False,
        seed: int = 0,
        policy: BadInputPolicy | None = None,
    ) -> None:
        self.utterances = utterances
        self.split = split
        self.sample_rate = sample_rate
        self.augment = augment if augment is not None and augment.active else None
        self.fixed_noise = fixed_noise
        self.seed = seed
        self.policy = policy or BadInputPolicy("error")

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def durations(self) -> list[float]:
        return [u.num_samples / self.sample_rate for u in self.utterances]

    def __getitem__(self, key: int | EpochItem) -> dict | None:
        epoch, index = key if isinstance(key, EpochItem) else (0, key)
        utt = self.utterances[index]
        try:
            wave = load_waveform(utt.audio_path, self.sample_rate)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            # The header was checked at setup; a broken body only shows when decoding.
            message = f"{utt.where}: cannot decode audio {utt.audio_path}: {first_line(e)}"
            self.policy.reject(self.split, "unreadable_audio", message)
            return None  # skip mode: the collator drops it
        if self.augment is not None:
            epoch = 0 if self.fixed_noise else epoch
            wave = self.augment(wave, item_generator(self.seed, epoch, index))
        return {"id": utt.id, "text": utt.text, "waveform": wave, "labels": list(utt.label_ids)}


class SpeechCollator:
    """Pads a list of items into the wav2vec2 batch the models consume.

    `input_values` (B, T) float, zero-mean unit-variance per utterance over its real samples
    (the processor's feature extractor does it, padding stays 0); `attention_mask` (B, T) long;
    `labels` (B, L) long with -100 padding; `ids` and `texts` lists.
    """

    def __init__(self, processor: Wav2Vec2Processor, sample_rate: int = 16000) -> None:
        self.processor = processor
        self.sample_rate = sample_rate

    def __call__(self, items: list[dict | None]) -> dict:
        items = [item for item in items if item is not None]
        if not items:
            raise DataError("every utterance of this batch was unreadable (see the warnings above)")
        features = self.processor.feature_extractor(
            [item["waveform"].numpy() for item in items],
            sampling_rate=self.sample_rate,
            padding="longest",
            return_attention_mask=True,
            return_tensors="np",
        )
        longest = max(len(item["labels"]) for item in items)
        labels = np.full((len(items), longest), LABEL_PAD, dtype=np.int64)
        for row, item in enumerate(items):
            labels[row, : len(item["labels"])] = item["labels"]
        return {
            "input_values": torch.from_numpy(
                np.asarray(features["input_values"], dtype=np.float32)
            ),
            "attention_mask": torch.from_numpy(np.asarray(features["attention_mask"])).long(),
            "labels": torch.from_numpy(labels),
            "ids": [item["id"] for item in items],
            "texts": [item["text"] for item in items],
        }
