"""Step-text tokenizers: a small BERT-style WordPiece trained locally, or a local pretrained one.

The WordPiece is trained with `tokenizers` on the step texts (the generator's whole text
vocabulary, or the training sentences of an annotation file), wrapped as a transformers
`BertTokenizerFast` and saved under the cache dir, keyed by a hash of its corpus, so the same
data always gives the same vocabulary and `vocab_size` is known as soon as the DataModule exists.
"""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import WordPieceTrainer
from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerBase

from casebook.common.errors import DataError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(corpus: list[str], max_vocab_size: int = 4000) -> PreTrainedTokenizerBase:
    """A lower-casing BERT WordPiece tokenizer trained on `corpus` ([PAD] is id 0)."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = WordPieceTrainer(
        vocab_size=max_vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    tokenizer.train_from_iterator(sorted(set(corpus)), trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=tokenizer)


def cached_wordpiece(
    corpus: list[str], cache_dir: Path, max_vocab_size: int = 4000
) -> PreTrainedTokenizerBase:
    """`train_wordpiece(corpus)`, loaded from `cache_dir` when this corpus was seen before."""
    digest = hashlib.sha1(
        "\n".join([str(max_vocab_size), *sorted(set(corpus))]).encode()
    ).hexdigest()[:16]
    folder = Path(cache_dir) / "video" / f"wordpiece-{digest}"
    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    tokenizer = train_wordpiece(corpus, max_vocab_size)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
    tokenizer.save_pretrained(staging)
    try:
        os.replace(staging, folder)  # atomic: parallel ranks never see half a tokenizer
    except OSError:  # another process saved it first
        shutil.rmtree(staging, ignore_errors=True)
    return tokenizer


def load_pretrained_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """A tokenizer from a local folder (no hub downloads); its pad token must be set."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: tokenizer folder not found")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot load a tokenizer from it ({err})") from None
    if tokenizer.pad_token_id is None:
        raise DataError(f"{path}: tokenizer has no pad token")
    return tokenizer
