import re
from collections import Counter

from datamodules.speech.sentences import cardinal, everyday_sentences, ordinal, year


def test_sentences_are_distinct_and_repeatable():
    first = everyday_sentences(500, seed=3)
    assert len(set(first)) == 500
    assert first == everyday_sentences(500, seed=3)
    assert first != everyday_sentences(500, seed=4)


def test_sentences_cover_everyday_english_with_numbers_in_words():
    sentences = everyday_sentences(3000, seed=0)
    words = Counter(w.lower() for s in sentences for w in re.findall(r"[A-Za-z']+", s))
    assert len(words) > 1500  # a broad vocabulary, not a narrow grammar
    function_words = "the a an of to in on at for with and but because if when not don't didn't"
    assert all(words[w] > 0 for w in function_words.split())
    assert all(words[w] > 0 for w in "one two seven twenty hundred thousand".split())
    assert sum(s.endswith("?") for s in sentences) > 300  # questions, not only statements
    assert not any(re.search(r"\d", s) for s in sentences)


def test_numbers_are_written_as_spoken():
    assert cardinal(342) == "three hundred forty two"
    assert cardinal(1005, british_and=True) == "one thousand and five"
    assert ordinal(23) == "twenty third"
    assert ordinal(40) == "fortieth"
    assert year(1984) == "nineteen eighty four"
    assert year(2005) == "two thousand and five"
    assert year(1905) == "nineteen oh five"
