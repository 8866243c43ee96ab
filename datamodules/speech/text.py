"""The character vocabulary, transcript normalization and the HF processor built from them.

The vocabulary is fixed (32 symbols, the same order as `facebook/wav2vec2-base-960h`), so
`vocab_size` and `pad_token_id` are known before any data is read and a locally stored 960h
teacher's CTC head lines up with our labels without remapping.
"""

import json
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import Literal

from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

PAD_TOKEN = "<pad>"  # also the CTC blank, as in HF's Wav2Vec2ForCTC (blank id = pad_token_id)
UNK_TOKEN = "<unk>"
WORD_DELIMITER = "|"
SPECIAL_TOKENS = (PAD_TOKEN, "<s>", "</s>", UNK_TOKEN, WORD_DELIMITER)
# Letters by frequency, then the apostrophe where wav2vec2-base-960h has it.
CHARACTERS = "ETAONIHSRDLUMWCFGYPBVK'XJQZ"

LetterCase = Literal["upper", "lower"]

# Punctuation that carries no sound: removed (dashes and slashes become a word break).
_SILENT_PUNCTUATION = re.compile(r"[.,!?;:\"()\[\]{}\u2026\u00ab\u00bb\u201c\u201d\u201e]")
_WORD_BREAKS = re.compile(r"[-\u2010-\u2015/_]")
_APOSTROPHES = str.maketrans({"\u2018": "'", "\u2019": "'", "`": "'", "\u00b4": "'"})


def build_vocab(letter_case: LetterCase = "upper") -> dict[str, int]:
    """Token -> id, in wav2vec2-base-960h order; `letter_case="lower"` for lower-case checkpoints."""
    letters = CHARACTERS if letter_case == "upper" else CHARACTERS.lower()
    return {token: i for i, token in enumerate([*SPECIAL_TOKENS, *letters])}


def normalize_transcript(text: str, letter_case: LetterCase = "upper") -> str:
    """Written text -> the spoken character string the CTC labels use.

    Accents are folded (café -> CAFE), sound-less punctuation dropped, dashes split words,
    quotes that are not part of a word removed. Digits and symbols are kept, so that
    `out_of_vocabulary` reports them: numbers must be written as words, as they are spoken.
    """
    text = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = _WORD_BREAKS.sub(" ", _SILENT_PUNCTUATION.sub(" ", text))
    words = [w.strip("'") if w.startswith("'") else w for w in text.split()]
    text = " ".join(w for w in words if w)
    return text.upper() if letter_case == "upper" else text.lower()


def out_of_vocabulary(normalized: str, vocab: dict[str, int]) -> list[str]:
    """Characters of a normalized transcript that the vocabulary cannot spell (sorted, unique)."""
    return sorted({c for c in normalized if c != " " and c not in vocab})


def build_processor(
    letter_case: LetterCase = "upper", sample_rate: int = 16000
) -> Wav2Vec2Processor:
    """A `Wav2Vec2Processor` (CTC tokenizer + feature extractor) built locally, no hub access."""
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps(build_vocab(letter_case)))
        tokenizer = Wav2Vec2CTCTokenizer(
            str(vocab_file),
            unk_token=UNK_TOKEN,
            pad_token=PAD_TOKEN,
            bos_token="<s>",
            eos_token="</s>",
            word_delimiter_token=WORD_DELIMITER,
            do_lower_case=False,
        )
    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=sample_rate,
        padding_value=0.0,
        do_normalize=True,  # zero mean, unit variance per utterance, as wav2vec2-base-960h expects
        return_attention_mask=True,
    )
    return Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer)


# wav2vec2's convolutional feature encoder (Wav2Vec2Config defaults): 25 ms windows, 20 ms hop.
CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)


def ctc_frames(num_samples: int) -> int:
    """Output frames of wav2vec2's feature encoder for `num_samples` input samples (~samples/320)."""
    frames = num_samples
    for kernel, stride in zip(CONV_KERNELS, CONV_STRIDES, strict=True):
        frames = (frames - kernel) // stride + 1
        if frames <= 0:
            return 0
    return frames


def ctc_min_frames(label_ids: list[int]) -> int:
    """Frames CTC needs to emit `label_ids`: one per label plus a blank between each repeat."""
    repeats = sum(1 for a, b in zip(label_ids, label_ids[1:], strict=False) if a == b)
    return len(label_ids) + repeats
