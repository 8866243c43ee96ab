"""A word n-gram language model of the training transcripts, as an ARPA file for CTC beam search.

    from datamodules.speech.language_model import build_arpa, check_arpa
    build_arpa(training_transcripts, "runs/speech_teacher/lm.arpa", order=3)
    check_arpa("runs/speech_teacher/lm.arpa")  # one DataError line naming the file if it is bad

Written here because no KenLM `lmplz` binary ships with a Python package: interpolated
Kneser-Ney smoothing (Chen & Goodman 1998) with one absolute discount per order, stored as a
back-off ARPA file the way KenLM stores it: each listed n-gram carries its interpolated
log10 probability, each context the log10 weight its unlisted words back off with. Lower orders
use continuation counts (how many distinct words precede an n-gram), except n-grams that start
the sentence, which nothing precedes. The text is the transcripts the model is trained on and
nothing else, so a validation or test sentence never reaches the beam search by way of the LM.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from casebook.common.errors import DataError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
UNK_LOG10 = -6.0  # an unseen word: rare, but not impossible (the beam may still spell it)


def _discount(counts: Counter) -> float:
    """Absolute discount D = n1 / (n1 + 2 n2) of one order (Ney et al. 1994), from the number of
    n-grams seen once (n1) and twice (n2); 0.5 when too few are seen to estimate it."""
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def ngram_counts(sentences: Iterable[list[str]], order: int) -> list[Counter]:
    """Kneser-Ney counts per order (index 0: unigrams): raw counts at the highest order and for
    n-grams starting with <s>; continuation counts (distinct left neighbours) below."""
    raw = Counter()
    for words in sentences:
        tokens = [BOS, *words, EOS]
        for i in range(1, len(tokens)):
            raw[tuple(tokens[max(0, i - order + 1) : i + 1])] += 1
    counts = [Counter() for _ in range(order)]
    for gram, count in raw.items():
        counts[len(gram) - 1][gram] += count
    for n in range(order - 1, 0, -1):  # continuation counts of order n from order n + 1
        left = Counter(gram[1:] for gram in counts[n])
        for gram in list(counts[n - 1]):
            if gram[0] != BOS:
                counts[n - 1][gram] = left.get(gram, counts[n - 1][gram])
        for gram in left:
            counts[n - 1].setdefault(gram, left[gram])
    return counts


def kneser_ney(counts: list[Counter]) -> tuple[list[dict], list[dict]]:
    """log10 probabilities and back-off weights per order, interpolated Kneser-Ney."""
    order = len(counts)
    probs: list[dict] = [{} for _ in range(order)]
    backoffs: list[dict] = [{} for _ in range(order)]
    vocabulary = {gram[0] for gram in counts[0]} | {UNK}
    unigram_total = sum(counts[0].values())
    discount = _discount(counts[0])
    types = len(counts[0])
    # Unigrams: discounted continuation counts, the mass freed spread uniformly over the words.
    leftover = discount * types / unigram_total
    for (word,), count in counts[0].items():
        p = max(count - discount, 0.0) / unigram_total + leftover / len(vocabulary)
        probs[0][(word,)] = p
    probs[0][(UNK,)] = max(leftover / len(vocabulary), 10**UNK_LOG10)
    for n in range(1, order):
        discount = _discount(counts[n])
        context_total: dict[tuple, float] = defaultdict(float)
        context_types: Counter = Counter()
        for gram, count in counts[n].items():
            context_total[gram[:-1]] += count
            context_types[gram[:-1]] += 1
        for gram, count in counts[n].items():
            context = gram[:-1]
            gamma = discount * context_types[context] / context_total[context]
            lower = _interpolated(probs, backoffs, gram[1:])
            probs[n][gram] = max(count - discount, 0.0) / context_total[context] + gamma * lower
        for context, total in context_total.items():
            backoffs[n - 1][context] = discount * context_types[context] / total
    return probs, backoffs


def _interpolated(probs: list[dict], backoffs: list[dict], gram: tuple) -> float:
    """p(gram's last word | the rest) from what is already estimated, backing off as ARPA does."""
    if gram in probs[len(gram) - 1]:
        return probs[len(gram) - 1][gram]
    if len(gram) == 1:
        return probs[0][(UNK,)]
    return backoffs[len(gram) - 2].get(gram[:-1], 1.0) * _interpolated(probs, backoffs, gram[1:])


def build_arpa(transcripts: Iterable[str], path: str | Path, order: int = 3) -> Path:
    """Write an ARPA `order`-gram model of `transcripts` (one sentence each, words split on
    spaces, in the case the CTC vocabulary spells them) to `path`."""
    sentences = [text.split() for text in transcripts if text.strip()]
    if not sentences:
        raise DataError(f"{path}: no transcript to build a language model from")
    probs, backoffs = kneser_ney(ngram_counts(sentences, order))
    probs[0][(BOS,)] = 0.0  # never predicted; ARPA's convention is log10 p = -99
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["", "\\data\\"]
    lines += [f"ngram {n + 1}={len(probs[n])}" for n in range(order)]
    for n in range(order):
        lines += ["", f"\\{n + 1}-grams:"]
        for gram in sorted(probs[n]):
            log_p = -99.0 if gram == (BOS,) else math.log10(probs[n][gram])
            row = f"{log_p:.6f}\t{' '.join(gram)}"
            if n < order - 1 and gram in backoffs[n]:
                row += f"\t{math.log10(backoffs[n][gram]):.6f}"
            elif n < order - 1:
                row += "\t0.000000"
            lines.append(row)
    lines += ["", "\\end\\", ""]
    partial = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    partial.write_text("\n".join(lines))
    partial.replace(path)  # atomic: DDP ranks building the same model never read half a file
    return path


def check_arpa(path: str | Path) -> dict[int, int]:
    """The n-gram counts an ARPA file declares, after checking that each section holds as many
    well-formed entries as declared; a missing or corrupt file raises one DataError line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no language model file there; build one (README, Speech)")
    declared: dict[int, int] = {}
    found: Counter = Counter()
    section = None
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable ARPA text file ({error})") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        if line == "\\data\\":
            section = "data"
        elif line.startswith("\\") and line.endswith("-grams:"):
            section = int(line[1:].split("-")[0])
        elif line == "\\end\\":
            section = "end"
        elif section == "data" and line.startswith("ngram "):
            n, _, count = line[6:].partition("=")
            declared[int(n)] = int(count)
        elif isinstance(section, int):
            fields = line.split("\t") if "\t" in line else line.split()
            try:
                float(fields[0])
                if len(fields) == 1 or len(fields[1].split()) != section:
                    raise ValueError
            except ValueError:
                raise DataError(
                    f"{path}, line {number}: not a {section}-gram entry of an ARPA file"
                ) from None
            found[section] += 1
    if not declared or section != "end":
        raise DataError(f"{path}: not a complete ARPA file (no \\data\\ header or \\end\\)")
    for n, count in declared.items():
        if found[n] != count:
            raise DataError(f"{path}: declares {count} {n}-grams but holds {found[n]}")
    return declared
