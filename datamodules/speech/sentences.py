"""Everyday English sentences for the synthesized speech corpus, read from
`everyday_sentences.txt` beside this module (shipped as package data).

The file holds 10,000 distinct sentences, one a line: common conversational lines and the output
of a seeded grammar over an everyday vocabulary (people, food, home, town, travel, work, school,
weather, health, time, money), with numbers, times, dates and prices written as words. A CTC model
misspells the words it never heard, so the sentences aim at breadth: function words, tenses,
negations with contractions, questions, requests. The grammar generated them once (seed 0; it was
this module's code until issue 15, see git history); the file is now the corpus, so a change to it
changes every synthesized corpus: bump `CORPUS_VERSION` in tts_corpus.py with it.

    from datamodules.speech.sentences import everyday_sentences
    everyday_sentences(5)           # the file's first five sentences
    everyday_sentences(5, seed=1)   # five of them in an order drawn from the seed
"""

import functools
import random
from pathlib import Path

from casebook.common.errors import DataError

SENTENCES_FILE = Path(__file__).with_name("everyday_sentences.txt")


@functools.cache
def corpus_sentences() -> tuple[str, ...]:
    """Every sentence of `SENTENCES_FILE`, in the file's order."""
    return tuple(SENTENCES_FILE.read_text(encoding="utf-8").splitlines())


def everyday_sentences(count: int, seed: int = 0) -> list[str]:
    """`count` distinct sentences, deterministic in `seed`: seed 0 takes the file's first `count`
    (the corpus every config uses), another seed the first `count` of an order it shuffles."""
    sentences = corpus_sentences()
    if count > len(sentences):
        raise DataError(
            f"{SENTENCES_FILE.name}: holds {len(sentences)} sentences, {count} were asked for: "
            "ask for fewer (--data.corpus.num_train_sentences ...) or bring a manifest "
            "(--data.source=manifest)"
        )
    if seed == 0:
        return list(sentences[:count])
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    return [sentences[i] for i in order[:count]]
