"""Reading speech sources into checked utterance lists.

Three layouts are read here (the tts corpus is written as manifests, so it reuses the first):

- NeMo-style manifest: JSONL rows `{"audio_filepath": ..., "text": ..., "duration": ...}`,
  relative paths resolved against the manifest's folder; optional `id` and `speaker`.
- LibriSpeech: `<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac` with one
  `<speaker>-<chapter>.trans.txt` per chapter (`<utt id> <TRANSCRIPT>` per line).
- A folder of unlabeled .wav/.flac files (self-supervised pre-training), split by path hash.

Every utterance is checked once, when the split is read: the audio exists and its header reads,
the transcript is non-empty and spellable with the vocabulary, and the audio is long enough for
CTC to emit its labels. A failure is one `DataError` line naming the file, row or id, and the
problem, or, with `on_bad_input="skip"`, a warning and a count under `<split>/<reason>`.
"""

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import soundfile as sf

from casebook.common.errors import DataError, first_line
from datamodules.speech.text import (
    LetterCase,
    ctc_frames,
    ctc_min_frames,
    normalize_transcript,
    out_of_vocabulary,
)

log = logging.getLogger(__name__)

OnBadInput = Literal["error", "skip"]
# Reasons an utterance is rejected (keys of the skip counts, after the split prefix).
BAD_INPUT_REASONS = (
    "malformed_row",
    "missing_file",
    "unreadable_audio",
    "empty_transcript",
    "out_of_vocabulary",
    "too_short",
)
_MAX_WARNINGS_PER_SPLIT = 10


@dataclass(frozen=True)
class RawUtterance:
    """One row as the source states it, before any check."""

    where: str  # "train.jsonl: row 7 (id x)": how error messages point at it
    id: str
    audio_path: Path
    text: str
    speaker: str | None = None


@dataclass(frozen=True)
class Utterance:
    """A checked utterance, ready to load."""

    id: str
    audio_path: Path
    text: str  # normalized transcript
    label_ids: tuple[int, ...]
    num_samples: int  # at the target sample rate
    speaker: str | None
    where: str


class BadInputPolicy:
    """Raises on bad input, or (skip mode) logs a warning and counts it per split and reason."""

    def __init__(self, on_bad_input: OnBadInput) -> None:
        if on_bad_input not in ("error", "skip"):
            raise ValueError(f"on_bad_input must be 'error' or 'skip', not {on_bad_input!r}")
        self.on_bad_input = on_bad_input
        self.counts: Counter[str] = Counter()

    def reject(self, split: str, reason: str, message: str) -> None:
        if self.on_bad_input == "error":
            raise DataError(message)
        key = f"{split}/skipped_{reason}"
        self.counts[key] += 1
        if sum(v for k, v in self.counts.items() if k.startswith(f"{split}/")) <= (
            _MAX_WARNINGS_PER_SPLIT
        ):
            log.warning("skipped: %s", message)


# --------------------------------------------------------------------------- sources


def read_manifest(
    path: str | Path, split: str, policy: BadInputPolicy, labeled: bool = True
) -> Iterator[RawUtterance]:
    """Rows of a NeMo-style JSONL manifest (`labeled=False`: `text` optional); a missing
    manifest is always an error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {split} manifest does not exist")
    with open(path, encoding="utf-8") as f:
        for row_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}: row {row_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                policy.reject(split, "malformed_row", f"{where}: not valid JSON ({e.msg})")
                continue
            if not isinstance(row, dict) or not isinstance(row.get("audio_filepath"), str):
                policy.reject(split, "malformed_row", f"{where}: no audio_filepath string")
                continue
            if labeled and not isinstance(row.get("text"), str):
                policy.reject(split, "malformed_row", f"{where}: no text string")
                continue
            audio = Path(row["audio_filepath"])
            audio = audio if audio.is_absolute() else path.parent / audio
            utt_id = str(row.get("id") or audio.stem)
            speaker = row.get("speaker")
            yield RawUtterance(
                f"{where} (id {utt_id})",
                utt_id,
                audio,
                str(row.get("text") or ""),
                None if speaker is None else str(speaker),
            )


AUDIO_SUFFIXES = (".wav", ".flac")


def read_folder(
    root: str | Path, split: str, fractions: tuple[float, float] = (0.05, 0.05)
) -> Iterator[RawUtterance]:
    """Unlabeled audio: every .wav and .flac under `root`, dealt into train, val and test by a
    hash of each file's path relative to `root`: ordered by hash, the first `fractions[0]` of the
    files (at least one) are val, the next `fractions[1]` (at least one) test, the rest train. The
    splits are disjoint, and a file keeps its split as others are added unless it sits at a
    boundary."""
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"{folder}: audio folder does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if len(files) < 3:
        raise DataError(f"{folder}: no .wav or .flac files under it (train, val and test need 3)")

    def key(path: Path) -> str:
        return hashlib.sha1(path.relative_to(folder).as_posix().encode()).hexdigest()

    ordered = sorted(files, key=key)
    val = max(1, round(fractions[0] * len(files)))
    test = max(1, round(fractions[1] * len(files)))
    chosen = {
        "val": ordered[:val],
        "test": ordered[val : val + test],
        "train": ordered[val + test :],
    }
    for path in sorted(chosen[split]):
        yield RawUtterance(f"{path}", path.relative_to(folder).as_posix(), path, "")


def read_librispeech(
    root: str | Path, subset: str, policy: BadInputPolicy
) -> Iterator[RawUtterance]:
    """Utterances of one LibriSpeech subset folder (e.g. `dev-clean`) under `root`."""
    folder = Path(root) / subset
    if not folder.is_dir() and (Path(root) / "LibriSpeech" / subset).is_dir():
        folder = Path(root) / "LibriSpeech" / subset  # the archive's own top folder
    if not folder.is_dir():
        raise DataError(f"{folder}: LibriSpeech subset folder does not exist")
    transcripts = sorted(folder.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise DataError(f"{folder}: no <speaker>/<chapter>/*.trans.txt files (LibriSpeech layout)")
    for trans in transcripts:
        speaker = trans.parent.parent.name
        with open(trans, encoding="utf-8") as f:
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                utt_id, _, text = line.strip().partition(" ")
                yield RawUtterance(
                    f"{trans}: line {line_number} (id {utt_id})",
                    utt_id,
                    trans.parent / f"{utt_id}.flac",
                    text,
                    speaker,
                )


# --------------------------------------------------------------------------- checks


def check_utterances(
    raw: Iterator[RawUtterance],
    split: str,
    policy: BadInputPolicy,
    tokenizer,
    sample_rate: int,
    letter_case: LetterCase = "upper",
    labeled: bool = True,
) -> list[Utterance]:
    """Keep the utterances that pass every check; reject the others through `policy`.
    `labeled=False` (unlabeled audio, for self-supervised pre-training) checks the audio only."""
    vocab = tokenizer.get_vocab()
    kept = []
    for r in raw:
        text = normalize_transcript(r.text, letter_case) if labeled else ""
        if labeled and not text:
            policy.reject(split, "empty_transcript", f"{r.where}: transcript is empty")
            continue
        if bad := out_of_vocabulary(text, vocab):
            shown = " ".join(repr(c) for c in bad)
            policy.reject(
                split,
                "out_of_vocabulary",
                f"{r.where}: transcript has characters outside the vocabulary: {shown} "
                f"(write numbers as words) in {r.text!r}",
            )
            continue
        if not r.audio_path.is_file():
            policy.reject(
                split, "missing_file", f"{r.where}: audio file {r.audio_path} does not exist"
            )
            continue
        try:
            info = sf.info(str(r.audio_path))
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            policy.reject(
                split,
                "unreadable_audio",
                f"{r.where}: cannot read audio {r.audio_path}: {first_line(e)}",
            )
            continue
        num_samples = round(info.frames * sample_rate / info.samplerate)
        if not labeled:
            if ctc_frames(num_samples) < 2:
                policy.reject(
                    split, "too_short", f"{r.where}: audio {r.audio_path} is shorter than 2 frames"
                )
            else:
                kept.append(Utterance(r.id, r.audio_path, "", (), num_samples, r.speaker, r.where))
            continue
        label_ids = tuple(tokenizer(text).input_ids)
        needed = ctc_min_frames(list(label_ids))
        frames = ctc_frames(num_samples)
        if frames < needed:
            policy.reject(
                split,
                "too_short",
                f"{r.where}: audio {r.audio_path} is too short for its transcript: "
                f"{num_samples / sample_rate:.2f} s gives {frames} CTC frames, "
                f"the {len(label_ids)} labels need {needed}",
            )
            continue
        kept.append(Utterance(r.id, r.audio_path, text, label_ids, num_samples, r.speaker, r.where))
    return kept
