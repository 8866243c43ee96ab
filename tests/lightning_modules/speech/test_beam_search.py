"""CTC beam search with and without the training transcripts' language model."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from casebook.common.errors import DataError
from datamodules.speech.text import build_processor
from lightning_modules.speech.beam_search import (
    BeamSearchConfig,
    beam_decoder,
    beam_transcripts,
    language_model_path,
)
from lightning_modules.speech.ctc import greedy_transcripts

TOKENIZER = build_processor().tokenizer


def spell(text: str, frames_per_char: int = 3) -> list[int]:
    """Frame labels that spell `text`: each character held a few frames, blanks between."""
    vocab = TOKENIZER.get_vocab()
    ids = []
    for char in text.replace(" ", "|"):
        ids += [vocab[char]] * frames_per_char + [TOKENIZER.pad_token_id]
    return ids


def logits_of(paths: list[list[int]], sharpness: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, frames, vocab) logits peaked on each path (padded), and the valid-frame mask."""
    frames = max(len(p) for p in paths)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(len(paths), frames, len(TOKENIZER), generator=generator)
    specials = [TOKENIZER.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<unk>")]
    logits[..., specials] = -10.0  # never emitted by a trained model
    valid = torch.zeros(len(paths), frames, dtype=torch.bool)
    for i, path in enumerate(paths):
        logits[i, torch.arange(len(path)), torch.tensor(path)] += sharpness
        valid[i, : len(path)] = True
    return logits, valid


@pytest.mark.parametrize("sharpness", [6.0, 2.0])  # readable paths, and noisy ones
def test_a_beam_of_one_without_a_language_model_is_greedy_decoding(sharpness):
    texts = ["PUT THE KETTLE ON", "IT IS RED", "NO"]
    logits, valid = logits_of([spell(text) for text in texts], sharpness)
    greedy = greedy_transcripts(logits, valid, TOKENIZER)
    beam = beam_transcripts(beam_decoder(TOKENIZER), logits, valid, beam_width=1)
    # the same words (greedy keeps the double space of two word breaks; WER splits on spaces)
    assert [b.split() for b in beam] == [g.split() for g in greedy]
    assert (greedy == texts) == (sharpness > 5)  # so the comparison is not of empty strings


def test_the_language_model_picks_the_spelling_the_training_transcripts_use(tmp_path):
    pytest.importorskip("kenlm")
    from datamodules.speech.language_model import build_arpa

    arpa = build_arpa(["PUT THE KETTLE ON"] * 3 + ["THE KETTLE IS HOT"], tmp_path / "lm.arpa")
    # One frame each for the last two letters, where the acoustics slightly prefer E then L.
    vocab = TOKENIZER.get_vocab()
    blank = TOKENIZER.pad_token_id
    path = spell("PUT THE KETT") + [vocab["E"], blank, vocab["L"], blank] + spell(" ON")
    logits, valid = logits_of([path], sharpness=8.0)
    first = len(spell("PUT THE KETT"))
    for frame, other in ((first, "L"), (first + 2, "E")):
        logits[0, frame, vocab[other]] = logits[0, frame].max() - 0.2
    plain = beam_transcripts(beam_decoder(TOKENIZER), logits, valid, beam_width=16)
    with_lm = beam_transcripts(beam_decoder(TOKENIZER, arpa), logits, valid, beam_width=16)
    assert plain == ["PUT THE KETTEL ON"] and with_lm == ["PUT THE KETTLE ON"]


def test_the_train_language_model_never_holds_a_validation_or_test_word(tmp_path):
    splits = {
        "train": ["PUT THE KETTLE ON", "THE BOOK IS RED"],
        "val": ["A VALIDATIONWORD HERE"],
        "test": ["A TESTWORD THERE"],
    }
    datamodule = SimpleNamespace(transcripts=lambda split: splits[split])
    module = SimpleNamespace(
        trainer=SimpleNamespace(datamodule=datamodule, default_root_dir=tmp_path)
    )
    arpa = language_model_path(module, BeamSearchConfig(order=2))
    words = {line.split("\t")[1] for line in arpa.read_text().splitlines() if line.count("\t")}
    unigrams = {w for w in words if " " not in w}
    assert unigrams == {"PUT", "THE", "KETTLE", "ON", "BOOK", "IS", "RED", "<s>", "</s>", "<unk>"}
    assert arpa == tmp_path / "lm" / "train-2gram.arpa"


def test_a_missing_or_corrupt_language_model_is_one_line_naming_it(tmp_path):
    pytest.importorskip("kenlm")
    with pytest.raises(DataError, match="absent.arpa: no language model file"):
        beam_decoder(TOKENIZER, tmp_path / "absent.arpa")
    corrupt = tmp_path / "corrupt.arpa"
    corrupt.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\tA\n\\end\\\n")
    with pytest.raises(DataError, match="corrupt.arpa: declares 2 1-grams but holds 1"):
        beam_decoder(TOKENIZER, corrupt)
    with pytest.raises(DataError, match="training transcripts"):
        language_model_path(SimpleNamespace(trainer=SimpleNamespace()), BeamSearchConfig())


def test_a_missing_language_model_file_stops_the_command_line_in_one_line(cli_env, tmp_path):
    from casebook_runner import casebook

    result = casebook(
        "test", "--config", "configs/speech_teacher.yaml",
        "--model.beam_search.language_model", str(tmp_path / "nowhere.arpa"),
        f"--trainer.default_root_dir={tmp_path}",
        env=cli_env, cwd=Path(__file__).resolve().parents[3], timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("casebook: error:") and "nowhere.arpa" in lines[-1]
    assert not (tmp_path / "wandb").exists()  # stopped before any logger started
