"""Wav2Vec2CTCRecipe: the model it builds, CTC on unalignable input, greedy decoding, the export."""

import math

import pytest
import torch
from transformers import Wav2Vec2ForCTC
from unsafe_checkpoint import unsafe_checkpoint

from casebook.common.errors import DataError
from datamodules.speech.text import build_processor
from lightning_modules.speech import Wav2Vec2CTCRecipe
from lightning_modules.speech.ctc import (
    greedy_transcripts,
    reference_transcripts,
    too_short_for_ctc,
)


def test_recipe_builds_a_wav2vec2_with_20_ms_frames_from_its_arguments(teacher_args):
    recipe = Wav2Vec2CTCRecipe(**teacher_args)
    config = recipe.model.config
    assert (config.hidden_size, config.num_hidden_layers) == (32, 4)
    assert config.ctc_zero_infinity and config.ctc_loss_reduction == "mean"
    # total stride 320: one frame per 20 ms at 16 kHz, as wav2vec2-base
    assert recipe.model._get_feat_extract_output_lengths(16000) in (49, 50)
    with pytest.raises(ValueError, match="320"):
        Wav2Vec2CTCRecipe(network=teacher_args["network"] | {"conv_stride": (5, 2, 2, 2, 2)})


def test_ctc_loss_stays_finite_on_an_utterance_too_short_for_its_transcript(teacher_args):
    torch.manual_seed(0)
    recipe = Wav2Vec2CTCRecipe(**teacher_args)
    tokenizer = build_processor().tokenizer
    long_text = tokenizer("A SENTENCE FAR TOO LONG FOR A TENTH OF A SECOND").input_ids
    short_text = tokenizer("OK").input_ids
    labels = torch.full((2, len(long_text)), -100)
    labels[0, : len(long_text)] = torch.tensor(long_text)
    labels[1, : len(short_text)] = torch.tensor(short_text)
    batch = {
        "input_values": torch.randn(2, 16000),
        "attention_mask": torch.tensor([[1] * 1600 + [0] * 14400, [1] * 16000]),
        "labels": labels,
        "ids": ["too-short", "fine"],
    }
    assert too_short_for_ctc(recipe.model, batch["attention_mask"], labels).tolist() == [
        True,
        False,
    ]
    with pytest.warns(UserWarning, match="too-short"):
        loss = recipe.model_step(batch, "train")["loss"]
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in recipe.parameters() if p.grad is not None)


def test_greedy_decoding_merges_repeats_drops_blanks_and_ignores_padding():
    tokenizer = build_processor().tokenizer
    vocab = tokenizer.get_vocab()
    # frames: H H <blank> I | I <blank> I, then two padded frames that say X
    path = ["H", "H", "<pad>", "I", "|", "I", "<pad>", "I", "X", "X"]
    logits = torch.full((1, len(path), len(vocab)), -10.0)
    for frame, token in enumerate(path):
        logits[0, frame, vocab[token]] = 10.0
    valid = torch.tensor([[True] * 8 + [False] * 2])
    assert greedy_transcripts(logits, valid, tokenizer) == ["HI II"]
    labels = torch.tensor([tokenizer("HI II").input_ids + [-100, -100]])
    assert reference_transcripts(labels, tokenizer) == ["HI II"]


def test_export_writes_a_model_and_processor_that_load_back(teacher_args, tmp_path, batch):
    torch.manual_seed(0)
    recipe = Wav2Vec2CTCRecipe(**teacher_args).eval()
    directory = recipe.export(tmp_path / "hf")
    loaded = Wav2Vec2ForCTC.from_pretrained(directory).eval()
    assert (directory / "vocab.json").exists()
    with torch.no_grad():
        expected = recipe(batch["input_values"], batch["attention_mask"])
        actual = loaded(batch["input_values"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(actual, expected)


def test_export_reads_a_checkpoint_with_weights_only_and_refuses_pickled_code(
    teacher_args, tmp_path
):
    torch.manual_seed(0)
    trained, fresh = Wav2Vec2CTCRecipe(**teacher_args), Wav2Vec2CTCRecipe(**teacher_args)
    checkpoint = {"state_dict": trained.state_dict(), "hyper_parameters": dict(trained.hparams)}
    torch.save(checkpoint, tmp_path / "good.ckpt")
    directory = fresh.export(tmp_path / "hf", checkpoint_path=tmp_path / "good.ckpt")
    exported = Wav2Vec2ForCTC.from_pretrained(directory)
    torch.testing.assert_close(exported.lm_head.weight, trained.model.lm_head.weight)

    marker = tmp_path / "ran"
    unsafe = unsafe_checkpoint(tmp_path / "unsafe.ckpt", marker, checkpoint)
    with pytest.raises(DataError, match="unsafe.ckpt: holds pickled objects") as refused:
        fresh.export(tmp_path / "hf_unsafe", checkpoint_path=unsafe)
    assert "\n" not in str(refused.value) and not marker.exists()


def test_the_teacher_learns_to_spell_a_small_batch_it_trains_on(teacher_args, batch):
    """Learning, not only a finite loss: on four utterances the greedy CER falls from all-blank
    (1.0) to well below it, the CTC plateau left, in a few seconds."""
    from torchmetrics.functional.text import char_error_rate

    torch.manual_seed(0)
    recipe = Wav2Vec2CTCRecipe(**teacher_args)
    tokenizer = build_processor().tokenizer
    references = reference_transcripts(batch["labels"], tokenizer)

    def cer() -> float:
        recipe.eval()
        with torch.no_grad():
            step = recipe.model_step(batch, "val")
            logits, valid = step["logits"][""], step["valid_frames"]
        recipe.train()
        return float(char_error_rate(greedy_transcripts(logits, valid, tokenizer), references))

    before = cer()
    optimizer = torch.optim.AdamW(recipe.parameters(), lr=3e-3)
    for _ in range(300):
        loss = recipe.model_step(batch, "train")["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert before > 0.9 and cer() < 0.5, (before, cer())


@pytest.mark.parametrize("pair", [1, 3, 5, 7])
def test_filterbank_init_tunes_each_first_convolution_pair_to_its_mel_frequency(teacher_args, pair):
    """A tone at pair k's mel-spaced frequency (60 Hz to 0.95 x 8 kHz, 8 pairs from 16 channels)
    excites pair k most, whatever its phase; the default init is not a filterbank."""
    recipe = Wav2Vec2CTCRecipe(network=teacher_args["network"] | {"feature_init": "filterbank"})
    conv = recipe.model.wav2vec2.feature_extractor.conv_layers[0].conv
    mel = torch.linspace(2595 * math.log10(1 + 60 / 700), 2595 * math.log10(1 + 7600 / 700), 8)
    hz = 700 * (10 ** (mel / 2595) - 1)
    t = torch.arange(16000) / 16000
    for phase in (0.0, 1.0):
        tone = torch.sin(2 * torch.pi * hz[pair] * t + phase)[None, None]
        with torch.no_grad():
            out = conv(tone)  # (1, 16, frames)
        energy = (out[0, 0::2] ** 2 + out[0, 1::2] ** 2).mean(-1)  # (8,) per cosine/sine pair
        assert int(energy.argmax()) == pair
        assert energy[pair] > 4 * energy[[i for i in range(8) if i != pair]].max()
    default = Wav2Vec2CTCRecipe(**teacher_args).model.wav2vec2.feature_extractor.conv_layers[0]
    assert not torch.allclose(default.conv.weight, conv.weight)
