from datamodules.speech.text import (
    build_processor,
    ctc_frames,
    ctc_min_frames,
    normalize_transcript,
    out_of_vocabulary,
)


def test_normalization_keeps_letters_apostrophes_and_word_breaks():
    assert normalize_transcript("Don't stop -- it's “café” time!") == "DON'T STOP IT'S CAFE TIME"
    assert normalize_transcript("well-known", "lower") == "well known"


def test_digits_are_reported_outside_the_vocabulary():
    processor = build_processor()
    text = normalize_transcript("I have 3 cats & 2 dogs")
    assert out_of_vocabulary(text, processor.tokenizer.get_vocab()) == ["&", "2", "3"]


def test_tokenizer_round_trips_a_normalized_text():
    tokenizer = build_processor().tokenizer
    text = normalize_transcript("Hello, isn't the weather lovely? Bookkeeper.")
    ids = tokenizer(text).input_ids
    assert tokenizer.decode(ids, group_tokens=False) == text
    assert tokenizer.convert_tokens_to_ids("|") in ids  # spaces become the word delimiter


def test_vocabulary_matches_wav2vec2_base_960h():
    tokenizer = build_processor().tokenizer
    vocab = tokenizer.get_vocab()
    assert len(vocab) == 32 and tokenizer.pad_token_id == 0
    assert [vocab[t] for t in ("<pad>", "<s>", "</s>", "<unk>", "|", "E", "'", "Z")] == [
        0, 1, 2, 3, 4, 5, 27, 31,
    ]  # fmt: skip


def test_ctc_frame_count_follows_the_320x_downsampling():
    assert ctc_frames(16000) == 49  # one second: 20 ms frames
    assert ctc_frames(320 * 100) // 10 == 9
    assert ctc_frames(300) == 0
    assert ctc_min_frames([7, 7, 8]) == 4  # a blank must separate the repeated label
