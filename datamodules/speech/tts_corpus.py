"""A real speech corpus synthesized by eSpeak NG on first use, cached and reused.

Each utterance is one everyday sentence (`everyday_sentences.txt`) spoken by one eSpeak voice:
an English accent (en, en-us, en-gb-x-rp, en-029, ...) with a voice variant (m1, f2, klatt3,
Annie, ...) at a random speaking rate and pitch. The variant is the speaker: train, val and test
use disjoint variants and disjoint sentences, so test voices and sentences are never heard in
training. Audio is 16 kHz mono 16-bit wav with a NeMo-style manifest per split.

    from datamodules.speech.tts_corpus import TtsCorpusConfig, generate_tts_corpus
    corpus = generate_tts_corpus(TtsCorpusConfig(num_train_sentences=50), cache_dir="/tmp/c")
    corpus.manifests["train"]  # <cache>/speech/tts-<hash>/train.jsonl

Generation runs once per parameter set: the directory name hashes the parameters, and a
finished corpus is recognized by its `corpus.json`.
"""

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import random
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from datamodules.cache import default_cache_dir
from datamodules.speech.espeak import synthesize
from datamodules.speech.sentences import everyday_sentences

log = logging.getLogger(__name__)

# Bump when everyday_sentences.txt or the synthesis recipe changes: old caches are then ignored.
CORPUS_VERSION = 1
SPLITS = ("train", "val", "test")

# English accents shipped in espeak-ng-data/lang/gmw (en-Shaw is Shavian script, left out).
ACCENTS = (
    "en", "en-us", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-us-nyc",
)  # fmt: skip
# Voice variants in espeak-ng-data/voices/!v that sound like a person (the robot, whisper,
# "fast" and demonic variants are left out). Each split mixes male, female and Klatt voices.
TEST_VOICES = ("m3", "m7", "f2", "Annie", "steph2", "klatt3", "edward", "Hugo", "paul")
VAL_VOICES = ("m6", "f4", "linda", "klatt5", "benjamin", "Gene", "rob")
TRAIN_VOICES = (
    "m1", "m2", "m4", "m5", "m8", "f1", "f3", "f5", "klatt", "klatt2", "klatt4", "klatt6",
    "croak", "Alex", "Alicia", "Andrea", "Andy", "Denis", "Diogo", "Gene2", "Henrique", "Jacky",
    "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "Reed", "Storm", "adam", "anika",
    "announcer", "antonio", "aunty", "belinda", "boris", "david", "ed", "edward2", "gustave",
    "ian", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta", "marcelo", "max", "michel",
    "miguel", "mike2", "norbert", "pablo", "pedro", "quincy", "robert", "sandro", "shelby",
    "steph", "steph3", "travis", "victor", "grandma", "grandpa", "zac",
)  # fmt: skip

_VOLUME = 70  # eSpeak's default 100 clips several variants at int16
_EDGE_SILENCE_S = 0.1  # kept before and after the speech when trimming eSpeak's padding
# A worker process first imports torch and, through datamodules.speech, Lightning (~10 s) while an
# utterance takes ~15 ms (2026-12-07, 2-core AMD EPYC, avx2 avx512f, busy): smaller corpora are
# faster serially.
_POOL_MIN_UTTERANCES = 2000
_MAX_WORKERS = 8
_MAX_CHUNKSIZE = 32  # utterances per pool task: ~0.5 s of work, the ~1 ms cost per task vanishes


@dataclass(frozen=True)
class TtsCorpusConfig:
    """Everything that decides the corpus' content (and so its cache key)."""

    num_train_sentences: int = 4000
    num_val_sentences: int = 200
    num_test_sentences: int = 200
    train_readings_per_sentence: int = 1  # distinct training voices reading each train sentence
    accents: tuple[str, ...] = ACCENTS
    train_voices: tuple[str, ...] = TRAIN_VOICES
    val_voices: tuple[str, ...] = VAL_VOICES
    test_voices: tuple[str, ...] = TEST_VOICES
    rate_wpm: tuple[int, int] = (140, 200)  # speaking rate range, words per minute
    pitch: tuple[int, int] = (30, 70)  # eSpeak pitch range (0-100, 50 = the voice's own)
    seed: int = 0
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        voices = {s: set(getattr(self, f"{s}_voices")) for s in SPLITS}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            if shared := voices[a] & voices[b]:
                raise ValueError(f"{a} and {b} voices must be disjoint, both have {sorted(shared)}")
        for s in SPLITS:
            if not voices[s]:
                raise ValueError(f"no {s} voices given")
        if self.train_readings_per_sentence > len(voices["train"]):
            raise ValueError("train_readings_per_sentence exceeds the number of train voices")
        # more sentences than the corpus file holds: one line now, not after loggers start
        everyday_sentences(
            self.num_train_sentences + self.num_val_sentences + self.num_test_sentences
        )

    def key(self) -> str:
        """A short hash of the parameters, the corpus version and the eSpeak NG build."""
        params = dataclasses.asdict(self) | {
            "corpus_version": CORPUS_VERSION,
            "espeakng_loader": version("espeakng-loader"),
        }
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class TtsCorpus:
    """A generated corpus on disk."""

    root: Path
    manifests: dict[str, Path]  # split -> NeMo-style JSONL
    generated: bool  # False when it was found in the cache
    stats: dict = field(default_factory=dict)  # utterances, audio seconds, generation speed


@dataclass(frozen=True)
class _Plan:
    id: str
    split: str
    sentence_id: int
    text: str
    speaker: str
    accent: str
    rate_wpm: int
    pitch: int
    synth_seed: int


def plan_utterances(config: TtsCorpusConfig) -> list[_Plan]:
    """Who says what, in which split: deterministic in `config`, no audio yet."""
    counts = {
        "train": config.num_train_sentences,
        "val": config.num_val_sentences,
        "test": config.num_test_sentences,
    }
    sentences = everyday_sentences(sum(counts.values()), seed=config.seed)
    rng = random.Random(f"tts-plan-{config.seed}")
    order = list(range(len(sentences)))
    rng.shuffle(order)
    plans: list[_Plan] = []
    start = 0
    for split in SPLITS:
        sentence_ids = order[start : start + counts[split]]
        start += counts[split]
        voices = list(getattr(config, f"{split}_voices"))
        readings = config.train_readings_per_sentence if split == "train" else 1
        rotation: list[str] = []  # voices used round-robin so every speaker gets a fair share
        for sentence_id in sentence_ids:
            chosen: list[str] = []
            while len(chosen) < readings:
                if not rotation:
                    rotation = rng.sample(voices, len(voices))
                voice = rotation.pop()
                if voice not in chosen:
                    chosen.append(voice)
            for voice in chosen:
                index = len(plans)
                plans.append(
                    _Plan(
                        id=f"{split}-{voice}-{index:06d}",
                        split=split,
                        sentence_id=sentence_id,
                        text=sentences[sentence_id],
                        speaker=voice,
                        accent=rng.choice(config.accents),
                        rate_wpm=rng.randint(*config.rate_wpm),
                        pitch=rng.randint(*config.pitch),
                        synth_seed=rng.getrandbits(31),
                    )
                )
    return plans


def _trim_silence(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut eSpeak's leading and trailing padding down to `_EDGE_SILENCE_S`."""
    loud = np.flatnonzero(np.abs(samples) > 0.01 * max(1, int(np.abs(samples).max())))
    if loud.size == 0:
        return samples
    margin = int(_EDGE_SILENCE_S * sample_rate)
    return samples[max(0, loud[0] - margin) : loud[-1] + margin]


@functools.cache
def _resampler(native_rate: int, sample_rate: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(native_rate, sample_rate)  # sinc kernel built once


def speak(plan: _Plan, sample_rate: int) -> np.ndarray:
    """One utterance as int16 samples at `sample_rate`."""
    samples, native_rate = synthesize(
        plan.text,
        f"{plan.accent}+{plan.speaker}",
        rate_wpm=plan.rate_wpm,
        pitch=plan.pitch,
        volume=_VOLUME,
        seed=plan.synth_seed,
    )
    samples = _trim_silence(samples, native_rate)
    wave = torch.from_numpy(samples.astype(np.float32) / 32768.0)
    if native_rate != sample_rate:
        with torch.no_grad():
            wave = _resampler(native_rate, sample_rate)(wave)
    return (wave.clamp(-1.0, 32767 / 32768) * 32768.0).round().to(torch.int16).numpy()


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects taskset and cgroup cpusets
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _single_threaded() -> None:
    # One short resample per utterance: a single thread is ~25x faster than two on busy cores.
    torch.set_num_threads(1)


@contextlib.contextmanager
def _synthesized(
    plans: list[_Plan], sample_rate: int, workers: int
) -> Iterator[Iterator[np.ndarray]]:
    """The int16 samples of each plan, in plan order, from `workers` processes when above one.

    `speak` is a pure function of its plan, so the audio does not depend on `workers`.
    """
    if workers <= 1:
        yield (speak(plan, sample_rate) for plan in plans)
        return
    chunksize = max(1, min(_MAX_CHUNKSIZE, len(plans) // (4 * workers)))  # >= 4 tasks per worker
    # spawn, not fork: a forked child inherits torch's OpenMP thread pool in a broken state.
    # An executor, not multiprocessing.Pool: a worker that dies while starting (e.g. a script
    # without `if __name__ == "__main__":`) raises BrokenProcessPool instead of being respawned
    # forever.
    pool = ProcessPoolExecutor(
        workers, multiprocessing.get_context("spawn"), initializer=_single_threaded
    )
    try:
        yield pool.map(
            functools.partial(speak, sample_rate=sample_rate), plans, chunksize=chunksize
        )
    finally:  # on an error, drop the queued chunks rather than synthesize them all first
        pool.shutdown(cancel_futures=True)


def tts_corpus_dir(config: TtsCorpusConfig, cache_dir: str | Path | None = None) -> Path:
    """Where the corpus for `config` lives: `<cache>/speech/tts-<hash>`."""
    return Path(cache_dir or default_cache_dir()) / "speech" / f"tts-{config.key()}"


def generate_tts_corpus(
    config: TtsCorpusConfig | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> TtsCorpus:
    """Synthesize the corpus for `config` unless the cache already has it; usable outside Lightning.

    `workers` processes synthesize in parallel (1 = serial in this process). None picks one per
    usable CPU, at most 8, for corpora of 2,000 utterances or more, and serial below. The corpus
    is byte-identical whatever `workers` is, so it is not part of the cache key. Workers are
    spawned, so they import the main module: a script calling this needs the usual
    `if __name__ == "__main__":` guard.
    """
    config = config or TtsCorpusConfig()
    root = tts_corpus_dir(config, cache_dir)
    manifests = {split: root / f"{split}.jsonl" for split in SPLITS}
    if (root / "corpus.json").exists():
        stats = json.loads((root / "corpus.json").read_text()).get("stats", {})
        return TtsCorpus(root, manifests, generated=False, stats=stats)

    # Build next to the final place and rename at the end, so an interrupted run or a
    # concurrent process never leaves a half-written corpus that looks finished.
    staging = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    plans = plan_utterances(config)
    if workers is None:
        workers = min(_usable_cpus(), _MAX_WORKERS) if len(plans) >= _POOL_MIN_UTTERANCES else 1
    workers = max(1, min(workers, len(plans)))
    log.info("synthesizing %d utterances with eSpeak NG into %s", len(plans), root)
    started = time.perf_counter()
    audio_seconds = 0.0
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    threads = torch.get_num_threads()
    _single_threaded()
    try:
        with _synthesized(plans, config.sample_rate, workers) as utterances:
            for i, (plan, samples) in enumerate(zip(plans, utterances, strict=True)):
                relative = Path("wavs") / plan.split / f"{plan.id}.wav"
                (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                sf.write(staging / relative, samples, config.sample_rate, subtype="PCM_16")
                duration = len(samples) / config.sample_rate
                audio_seconds += duration
                row = {
                    "audio_filepath": str(relative),
                    "text": plan.text,
                    "duration": round(duration, 4),
                }
                row |= {
                    k: getattr(plan, k) for k in ("id", "speaker", "accent", "rate_wpm", "pitch")
                }
                rows[plan.split].append(row | {"sentence_id": plan.sentence_id})
                if (i + 1) % 500 == 0:
                    log.info("synthesized %d / %d utterances", i + 1, len(plans))
    finally:
        torch.set_num_threads(threads)
    elapsed = time.perf_counter() - started
    for split, split_rows in rows.items():
        with open(staging / f"{split}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in split_rows)
    stats = {
        "utterances": len(plans),
        "audio_seconds": round(audio_seconds, 2),
        "generation_seconds": round(elapsed, 2),
        "utterances_per_second": round(len(plans) / max(elapsed, 1e-9), 2),
        "audio_seconds_per_second": round(audio_seconds / max(elapsed, 1e-9), 2),
    }
    record = {"config": dataclasses.asdict(config), "key": config.key(), "stats": stats}
    (staging / "corpus.json").write_text(json.dumps(record, indent=2))
    try:
        staging.rename(root)
    except OSError:  # another process finished the same corpus first: use theirs
        shutil.rmtree(staging, ignore_errors=True)
        if not (root / "corpus.json").exists():
            raise
        return TtsCorpus(root, manifests, generated=False, stats=stats)
    log.info(
        "synthesized %d utterances (%.0f s of audio) in %.1f s: %.1f utterances/s",
        len(plans), audio_seconds, elapsed, stats["utterances_per_second"],
    )  # fmt: skip
    return TtsCorpus(root, manifests, generated=True, stats=stats)
