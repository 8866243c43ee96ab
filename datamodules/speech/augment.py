"""Waveform augmentation for training: noise at a chosen SNR and SpecAugment-style masks.

SpecAugment (Park et al. 2019) masks time steps and frequency bands of a spectrogram; wav2vec2
reads raw waveforms, so here time masks zero spans of samples and frequency masks zero a band of
the utterance's spectrum (rfft -> zero bins -> irfft). The model-side alternative is wav2vec2's
own `mask_time_prob` / `mask_feature_prob` (Wav2Vec2Config), which masks the feature encoder's
output during training; use one or the other, or both lightly.

Hand-written: torchaudio's masking transforms act on spectrograms, not on waveforms.
"""

from dataclasses import dataclass
from typing import Literal

import torch

NoiseColor = Literal["white", "pink"]


def add_noise(
    wave: torch.Tensor, snr_db: float, generator: torch.Generator, color: NoiseColor = "white"
) -> torch.Tensor:
    """`wave` plus Gaussian noise scaled so that signal power / noise power = `snr_db` dB."""
    noise = torch.randn(wave.shape, generator=generator)
    if color == "pink":  # 1/f power: scale the spectrum by 1/sqrt(f)
        spectrum = torch.fft.rfft(noise)
        freqs = torch.arange(spectrum.numel(), dtype=torch.float32).clamp(min=1.0)
        noise = torch.fft.irfft(spectrum / freqs.sqrt(), n=wave.numel())
    signal_power = wave.pow(2).mean().clamp(min=1e-10)
    noise_power = noise.pow(2).mean().clamp(min=1e-10)
    scale = torch.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return wave + scale * noise


def mask_time(
    wave: torch.Tensor, count: int, max_width: int, generator: torch.Generator
) -> torch.Tensor:
    """Zero `count` spans of up to `max_width` samples each."""
    wave = wave.clone()
    for _ in range(count):
        width = int(torch.randint(0, max_width + 1, (1,), generator=generator))
        if width == 0 or width >= wave.numel():
            continue
        start = int(torch.randint(0, wave.numel() - width, (1,), generator=generator))
        wave[start : start + width] = 0.0
    return wave


def mask_frequency(
    wave: torch.Tensor,
    count: int,
    max_width_hz: float,
    sample_rate: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Remove `count` bands of up to `max_width_hz` each from the spectrum of `wave`."""
    spectrum = torch.fft.rfft(wave)
    hz_per_bin = (sample_rate / 2) / max(1, spectrum.numel() - 1)
    max_bins = int(max_width_hz / hz_per_bin)
    for _ in range(count):
        width = int(torch.randint(0, max_bins + 1, (1,), generator=generator))
        if width == 0 or width >= spectrum.numel():
            continue
        start = int(torch.randint(0, spectrum.numel() - width, (1,), generator=generator))
        spectrum[start : start + width] = 0
    return torch.fft.irfft(spectrum, n=wave.numel())


@dataclass(frozen=True)
class WaveformAugment:
    """Noise, then frequency masks, then time masks, each applied with its own probability."""

    sample_rate: int = 16000
    noise_snr_db: tuple[float, float] | None = None  # SNR drawn uniformly in this range
    noise_prob: float = 1.0
    noise_color: NoiseColor = "white"
    freq_mask_prob: float = 0.0
    freq_mask_count: int = 1
    freq_mask_max_hz: float = 600.0
    time_mask_prob: float = 0.0
    time_mask_count: int = 2
    time_mask_max_ms: float = 80.0

    @property
    def active(self) -> bool:
        noise = self.noise_snr_db is not None and self.noise_prob > 0
        return noise or self.freq_mask_prob > 0 or self.time_mask_prob > 0

    def __call__(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(samples,) float -> (samples,) float."""

        def draw() -> float:
            return float(torch.rand((), generator=generator))

        if self.noise_snr_db is not None and draw() < self.noise_prob:
            low, high = self.noise_snr_db
            snr = low + (high - low) * draw()
            wave = add_noise(wave, snr, generator, self.noise_color)
        if self.freq_mask_prob > 0 and draw() < self.freq_mask_prob:
            wave = mask_frequency(
                wave, self.freq_mask_count, self.freq_mask_max_hz, self.sample_rate, generator
            )
        if self.time_mask_prob > 0 and draw() < self.time_mask_prob:
            max_width = int(self.time_mask_max_ms / 1000 * self.sample_rate)
            wave = mask_time(wave, self.time_mask_count, max_width, generator)
        return wave
