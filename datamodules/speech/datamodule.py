"""`SpeechDataModule`: speech and transcripts for wav2vec2 CTC training and distillation.

    casebook fit --config configs/speech_teacher.yaml --data.source=tts --data.corpus.num_train_sentences=500

Sources (`--data.source`):
- `tts` (default): an everyday-English corpus synthesized by eSpeak NG on first use and cached
  under `<cache>/speech/tts-<hash>/`; train, val and test use disjoint voices and sentences.
- `manifest`: NeMo-style JSONL files (`--data.train_manifest` etc.).
- `librispeech`: a local LibriSpeech folder (`--data.librispeech_root`).
- `folder`: any folder of unlabeled .wav/.flac files (`--data.audio_dir`, with `--data.labeled
  false`), for self-supervised pre-training; `labeled: false` also reads the other sources'
  audio without their transcripts.

Batches are dicts: `input_values` (B, T) float, `attention_mask` (B, T), `labels` (B, L) with
-100 padding, `ids`, `texts`. The character vocabulary is fixed, so `vocab_size` and
`pad_token_id` exist right after `__init__` for LightningCLI's `link_arguments`.
"""

import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from datamodules.hparams import from_plain, plain_hyperparameters
from datamodules.resume import ResumableDataLoader
from datamodules.speech.augment import NoiseColor, WaveformAugment
from datamodules.speech.batching import DurationBatchSampler, EpochSampler
from datamodules.speech.dataset import SpeechCollator, SpeechDataset
from datamodules.speech.sources import (
    BadInputPolicy,
    OnBadInput,
    check_utterances,
    read_folder,
    read_librispeech,
    read_manifest,
)
from datamodules.speech.text import LetterCase, build_processor
from datamodules.speech.tts_corpus import (
    ACCENTS,
    TEST_VOICES,
    TRAIN_VOICES,
    VAL_VOICES,
    TtsCorpus,
    TtsCorpusConfig,
    generate_tts_corpus,
)

log = logging.getLogger(__name__)

_STAGE_SPLITS = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
    None: ("train", "val", "test"),
}


LibriSpeechSubset = Literal[
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
]


@dataclass(frozen=True)
class SynthesizedCorpus:
    """The `tts` source's eSpeak NG corpus (`--data.corpus.*`); every field is part of its cache key.

    Args:
        num_train_sentences: Distinct training sentences.
        num_val_sentences: Distinct validation sentences (one reading each).
        num_test_sentences: Distinct test sentences (one reading each).
        train_readings_per_sentence: Distinct training voices reading each train sentence.
        accents: eSpeak English accents to draw from; None: all eight shipped.
        train_voices: eSpeak voice variants (speakers) for training; None: the built-in list.
        val_voices: Validation speakers, disjoint from the others; None: the built-in list.
        test_voices: Test speakers, never heard in training or validation; None: the built-in list.
        speaking_rate_wpm: Speaking rate range in words per minute.
        pitch: eSpeak pitch range (0-100; 50 is the voice's own).
        seed: Seed of the sentences and voice choices.
    """

    num_train_sentences: int = 4000
    num_val_sentences: int = 200
    num_test_sentences: int = 200
    train_readings_per_sentence: int = 1
    accents: list[str] | None = None
    train_voices: list[str] | None = None
    val_voices: list[str] | None = None
    test_voices: list[str] | None = None
    speaking_rate_wpm: tuple[int, int] = (140, 200)
    pitch: tuple[int, int] = (30, 70)
    seed: int = 0

    def tts_config(self, sample_rate: int) -> TtsCorpusConfig:
        """What `generate_tts_corpus` reads, the built-in voices and accents filled in."""
        return TtsCorpusConfig(
            num_train_sentences=self.num_train_sentences,
            num_val_sentences=self.num_val_sentences,
            num_test_sentences=self.num_test_sentences,
            train_readings_per_sentence=self.train_readings_per_sentence,
            accents=tuple(self.accents or ACCENTS),
            train_voices=tuple(self.train_voices or TRAIN_VOICES),
            val_voices=tuple(self.val_voices or VAL_VOICES),
            test_voices=tuple(self.test_voices or TEST_VOICES),
            rate_wpm=tuple(self.speaking_rate_wpm),
            pitch=tuple(self.pitch),
            seed=self.seed,
            sample_rate=sample_rate,
        )


@dataclass(frozen=True)
class Augmentation:
    """Waveform augmentation of the training split (`--data.augmentation.*`): noise, then
    frequency masks, then time masks, each with its own probability.

    Args:
        noise_snr_db: (low, high) SNR range in dB of added noise; None: no noise.
        noise_prob: Probability an utterance gets noise.
        noise_color: `white` or `pink` noise.
        noise_on_eval: Also add noise to val and test, the same noise every epoch.
        freq_mask_prob: Probability an utterance gets frequency masks (zeroed bands).
        freq_mask_count: Frequency masks per masked utterance.
        freq_mask_max_hz: Widest frequency mask in Hz.
        time_mask_prob: Probability an utterance gets time masks (zeroed spans); wav2vec2's own
            `--model.mask_time_prob` is the model-side alternative.
        time_mask_count: Time masks per masked utterance.
        time_mask_max_ms: Longest time mask in milliseconds.
    """

    noise_snr_db: tuple[float, float] | None = None
    noise_prob: float = 1.0
    noise_color: NoiseColor = "white"
    noise_on_eval: bool = False
    freq_mask_prob: float = 0.0
    freq_mask_count: int = 1
    freq_mask_max_hz: float = 600.0
    time_mask_prob: float = 0.0
    time_mask_count: int = 2
    time_mask_max_ms: float = 80.0

    def train_augment(self, sample_rate: int) -> WaveformAugment:
        """Everything, for the training split."""
        options = {k: v for k, v in asdict(self).items() if k != "noise_on_eval"}
        if self.noise_snr_db is not None:
            options["noise_snr_db"] = tuple(self.noise_snr_db)
        return WaveformAugment(sample_rate=sample_rate, **options)

    def eval_augment(self, sample_rate: int) -> WaveformAugment | None:
        """Noise only (masking is a training regularizer), when `noise_on_eval`; else None."""
        if not self.noise_on_eval or self.noise_snr_db is None:
            return None
        return WaveformAugment(
            sample_rate=sample_rate,
            noise_snr_db=tuple(self.noise_snr_db),
            noise_prob=self.noise_prob,
            noise_color=self.noise_color,
        )


@dataclass(frozen=True)
class Batching:
    """How utterances are grouped into batches beyond `batch_size` (`--data.batching.*`).

    Args:
        max_batch_seconds: Most padded seconds per batch (items x longest); None: no limit.
        shortest_first_epochs: The first training epochs go from the shortest utterance to the
            longest (SortaGrad, Amodei et al. 2016), not shuffled: short, easy alignments first
            shorten CTC's all-blank plateau.
    """

    max_batch_seconds: float | None = 160.0
    shortest_first_epochs: int = 0


class SpeechDataModule(L.LightningDataModule):
    """Speech for wav2vec2 CTC: a synthesized, a manifest or a LibriSpeech corpus."""

    def __init__(
        self,
        source: Literal["tts", "manifest", "librispeech", "folder"] = "tts",
        train_manifest: str | None = None,
        val_manifest: str | None = None,
        test_manifest: str | None = None,
        librispeech_root: str | None = None,
        librispeech_train: LibriSpeechSubset = "train-clean-100",
        librispeech_val: LibriSpeechSubset = "dev-clean",
        librispeech_test: LibriSpeechSubset = "test-clean",
        audio_dir: str | None = None,
        labeled: bool = True,
        cache_dir: str | None = None,
        corpus: SynthesizedCorpus = SynthesizedCorpus(),
        augmentation: Augmentation = Augmentation(),
        batch_size: int = 16,
        batching: Batching = Batching(),
        num_workers: int = 0,
        on_bad_input: OnBadInput = "error",
        letter_case: LetterCase = "upper",
        seed: int = 0,
        sample_rate: int = 16000,
    ) -> None:
        """
        Args:
            source: `tts` (synthesized on first use), `manifest` (NeMo JSONL), `librispeech` or
                `folder` (unlabeled audio).
            train_manifest: `manifest` source: JSONL with audio_filepath, text, duration per row.
            val_manifest: `manifest` source: validation JSONL.
            test_manifest: `manifest` source: test JSONL.
            librispeech_root: `librispeech` source: folder holding the subset folders.
            librispeech_train: LibriSpeech subset for training.
            librispeech_val: LibriSpeech subset for validation.
            librispeech_test: LibriSpeech subset for testing.
            audio_dir: `folder` source: unlabeled .wav/.flac files, dealt into train, val and
                test (90/5/5) by a hash of each path; needs `labeled: false`.
            labeled: false for self-supervised pre-training: transcripts are optional and not
                checked (a manifest may lack `text`), batches carry empty labels.
            cache_dir: where the tts corpus is generated; default `$CASEBOOK_CACHE` or `.cache/casebook`.
            corpus: `tts` source: sentences, voices and prosody of the synthesized corpus.
            augmentation: training-time noise and time/frequency masks.
            batch_size: most utterances per batch.
            batching: padded-seconds cap and shortest-first epochs.
            num_workers: DataLoader worker processes.
            on_bad_input: `error` stops at the first bad utterance; `skip` drops and counts them.
            letter_case: case of the letters in the vocabulary (`upper` as wav2vec2-base-960h).
            seed: seed of batch shuffling and augmentation.
            sample_rate: audio sample rate the model reads.
        """
        super().__init__()
        self.save_hyperparameters()
        plain_hyperparameters(self)  # checkpoints stay loadable with weights_only=True
        self.source = source
        self.sample_rate = sample_rate
        self.letter_case = letter_case
        self.batching = from_plain(batching, Batching)
        self.augmentation = from_plain(augmentation, Augmentation)
        self.processor = build_processor(letter_case, sample_rate)
        self.vocab_size: int = len(self.processor.tokenizer)
        self.pad_token_id: int = self.processor.tokenizer.pad_token_id
        self.policy = BadInputPolicy(on_bad_input)
        self.augment = self.augmentation.train_augment(sample_rate)
        self.tts_config = from_plain(corpus, SynthesizedCorpus).tts_config(sample_rate)
        self.corpus: TtsCorpus | None = None
        self.datasets: dict[str, SpeechDataset] = {}
        self._collator = SpeechCollator(self.processor, sample_rate)

    # ------------------------------------------------------------------ data preparation

    def prepare_data(self) -> None:
        """Synthesize the tts corpus if the cache lacks it (Lightning runs this on one process)."""
        if self.source == "tts":
            self.corpus = generate_tts_corpus(self.tts_config, self.hparams.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        """Read and check the splits `stage` needs (bad input raises or is counted)."""
        for split in _STAGE_SPLITS[stage]:
            if split not in self.datasets:
                self.datasets[split] = self._build_dataset(split)
        if self.policy.counts:
            log.warning("skipped bad input: %s", self.bad_input_counts)

    def _raw_utterances(self, split: str):
        hp = self.hparams
        if self.source == "tts":
            if self.corpus is None:  # setup() without prepare_data(), e.g. outside a Trainer
                self.corpus = generate_tts_corpus(self.tts_config, hp.cache_dir)
            return read_manifest(
                self.corpus.manifests[split], split, self.policy, self.hparams.labeled
            )
        if self.source == "manifest":
            path = {"train": hp.train_manifest, "val": hp.val_manifest, "test": hp.test_manifest}[
                split
            ]
            if path is None:
                raise ValueError(f"source 'manifest' needs --data.{split}_manifest")
            return read_manifest(path, split, self.policy, self.hparams.labeled)
        if self.source == "folder":
            if hp.audio_dir is None:
                raise ValueError("source 'folder' needs --data.audio_dir")
            if hp.labeled:
                raise ValueError("source 'folder' has no transcripts: set --data.labeled false")
            return read_folder(hp.audio_dir, split)
        if self.source == "librispeech":
            if hp.librispeech_root is None:
                raise ValueError("source 'librispeech' needs --data.librispeech_root")
            subset = {
                "train": hp.librispeech_train,
                "val": hp.librispeech_val,
                "test": hp.librispeech_test,
            }[split]
            return read_librispeech(hp.librispeech_root, subset, self.policy)
        raise ValueError(f"unknown source {self.source!r}: use tts, manifest or librispeech")

    def _build_dataset(self, split: str) -> SpeechDataset:
        utterances = check_utterances(
            self._raw_utterances(split),
            split,
            self.policy,
            self.processor.tokenizer,
            self.sample_rate,
            self.letter_case,
            self.hparams.labeled,
        )
        if not utterances:
            raise ValueError(f"the {split} split has no usable utterances")
        if split == "train":
            augment = self.augment
        else:
            augment = self.augmentation.eval_augment(self.sample_rate)
        return SpeechDataset(
            utterances,
            split,
            self.sample_rate,
            augment=augment,
            fixed_noise=split != "train",
            seed=self.hparams.seed,
            policy=self.policy,
        )

    def __str__(self) -> str:
        # LightningDataModule.__str__ builds every dataloader, which synthesizes the tts corpus.
        # jsonargparse formats the datamodule into a message for each of casebook's data->model
        # links it skips, at CLI instantiation, on every DDP rank: before `prepare_data`, which
        # is what should synthesize it, and on one process.
        return f"{type(self).__name__}(source={self.source!r})"

    # ------------------------------------------------------------------ public helpers

    @property
    def bad_input_counts(self) -> dict[str, int]:
        """Skipped utterances per `<split>/skipped_<reason>` (skip mode), e.g. for `log_dict`."""
        return dict(sorted(self.policy.counts.items()))

    def save_processor(self, directory: str | Path) -> Path:
        """Write the processor (vocab.json, tokenizer and feature extractor configs) to `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.processor.save_pretrained(str(directory))
        return directory

    def transcripts(self, split: str = "train") -> list[str]:
        """The normalized transcripts of a split's checked utterances, as the CTC labels spell
        them: the training split's are the language model's text (`beam_search`)."""
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        return [u.text for u in self.datasets[split].utterances]

    def class_counts(self) -> dict[str, int]:
        """For `casebook doctor`: occurrences of each vocabulary character (`|`: word break) in
        the training transcripts."""
        self.setup("fit")
        tokenizer = self.processor.tokenizer
        special = set(tokenizer.all_special_ids)
        counts = Counter(i for u in self.datasets["train"].utterances for i in u.label_ids)
        vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
        return {token: counts[i] for token, i in vocab if i not in special}

    def split_keys(self) -> dict[str, dict[str, set[str]]]:
        """For `casebook doctor`: the transcripts and (when the source names them) the speakers
        of each split; the tts corpus promises both disjoint."""
        self.setup()
        splits = {name: self.datasets[name].utterances for name in ("train", "val", "test")}
        keys = {"sentence": {name: {u.text for u in utts} for name, utts in splits.items()}}
        if all(u.speaker for utts in splits.values() for u in utts):
            keys["voice"] = {name: {u.speaker for u in utts} for name, utts in splits.items()}
        return keys

    # ------------------------------------------------------------------ loaders

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        dataset = self.datasets[split]
        batch_sampler = DurationBatchSampler(
            EpochSampler(dataset),
            self.hparams.batch_size,
            durations=dataset.durations,
            max_batch_seconds=self.batching.max_batch_seconds,
            shuffle=split == "train",
            seed=self.hparams.seed,
            shortest_first_epochs=self.batching.shortest_first_epochs,
        )
        # Training resumes mid-epoch (`--ckpt_path last`) with the batches it had not reached.
        # Every loader seeds its workers from a generator of its own, not the global one: a
        # resumed run builds its persistent validation iterator anew, the uninterrupted one not.
        train = split == "train"
        return (ResumableDataLoader if train else DataLoader)(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=self._collator,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
