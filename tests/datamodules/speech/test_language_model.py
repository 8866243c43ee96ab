"""The ARPA language model casebook builds from training transcripts."""

import math

import pytest

from casebook.common.errors import DataError
from datamodules.speech.language_model import BOS, EOS, UNK, build_arpa, check_arpa

TRAIN = [
    "PUT THE KETTLE ON",
    "PUT THE BOOK ON THE TABLE",
    "THE KETTLE IS ON THE TABLE",
    "PUT IT ON",
    "THE BOOK IS RED",
]


def read_arpa(path) -> tuple[dict, dict]:
    """log10 probabilities and back-offs by n-gram tuple."""
    probs, backoffs, section = {}, {}, None
    for line in path.read_text().splitlines():
        if line.endswith("-grams:"):
            section = int(line[1])
        elif section and line and not line.startswith("\\"):
            fields = line.split("\t")
            gram = tuple(fields[1].split())
            probs[gram] = float(fields[0])
            if len(fields) == 3:
                backoffs[gram] = float(fields[2])
    return probs, backoffs


def log10_p(probs, backoffs, gram) -> float:
    """ARPA back-off: the longest listed n-gram, plus the back-offs of the contexts skipped."""
    if gram in probs:
        return probs[gram]
    if len(gram) == 1:
        return probs[(UNK,)]
    return backoffs.get(gram[:-1], 0.0) + log10_p(probs, backoffs, gram[1:])


@pytest.mark.parametrize("order", [2, 3])
def test_every_context_gives_a_distribution_that_sums_to_one(order, tmp_path):
    probs, backoffs = read_arpa(build_arpa(TRAIN, tmp_path / "lm.arpa", order=order))
    words = sorted({g[0] for g in probs if len(g) == 1} - {BOS})
    contexts = [()] + [g for g in probs if len(g) < order and g[-1] != EOS]
    for context in contexts:
        total = sum(10 ** log10_p(probs, backoffs, (*context, w)) for w in words)
        assert total == pytest.approx(1.0, abs=1e-4), context


def test_seen_continuations_beat_unseen_ones_and_the_file_checks(tmp_path):
    path = build_arpa(TRAIN, tmp_path / "lm.arpa", order=3)
    probs, backoffs = read_arpa(path)
    seen = log10_p(probs, backoffs, ("PUT", "THE", "KETTLE"))
    unseen = log10_p(probs, backoffs, ("PUT", "THE", "RED"))
    assert seen > unseen + math.log10(2)
    assert probs[(BOS,)] == -99.0 and (UNK,) in probs
    # 9 words, <s>, </s> and <unk>; the distinct bigrams and trigrams of the five sentences
    assert check_arpa(path) == {1: 12, 2: 18, 3: 20}


def test_a_missing_a_truncated_or_a_garbled_arpa_file_is_one_line_naming_it(tmp_path):
    with pytest.raises(DataError, match="no language model file"):
        check_arpa(tmp_path / "absent.arpa")
    path = build_arpa(TRAIN, tmp_path / "lm.arpa", order=2)
    text = path.read_text()
    truncated = tmp_path / "truncated.arpa"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match="truncated.arpa"):
        check_arpa(truncated)
    garbled = tmp_path / "garbled.arpa"
    garbled.write_text(text.replace("\\2-grams:\n", "\\2-grams:\nnot-a-number\tPUT THE\n", 1))
    with pytest.raises(DataError, match=r"garbled.arpa, line \d+: not a 2-gram entry"):
        check_arpa(garbled)
    with pytest.raises(DataError, match="no transcript"):
        build_arpa(["", "  "], tmp_path / "empty.arpa")
