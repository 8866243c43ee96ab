from dataclasses import asdict

import torch

from datamodules.speech import Augmentation, SpeechDataModule, SynthesizedCorpus
from datamodules.speech.augment import add_noise, mask_frequency, mask_time
from datamodules.speech.dataset import load_waveform
from datamodules.speech.text import build_processor


def test_grouped_options_reach_the_corpus_and_checkpoint_as_plain_dicts(tmp_path):
    corpus = SynthesizedCorpus(num_train_sentences=12, accents=["en-gb"], seed=3)
    dm = SpeechDataModule(cache_dir=str(tmp_path), corpus=corpus, batching={"max_batch_seconds": 9})
    assert (dm.tts_config.num_train_sentences, dm.tts_config.seed) == (12, 3)
    assert dm.tts_config.accents == ("en-gb",) and dm.batching.max_batch_seconds == 9
    assert dm.hparams["corpus"]["num_train_sentences"] == 12  # weights_only-loadable
    assert SpeechDataModule(**dm.hparams).tts_config == dm.tts_config  # as a checkpoint rebuilds it


def test_vocab_size_and_pad_id_are_known_right_after_init(tmp_path):
    dm = SpeechDataModule(cache_dir=str(tmp_path))
    assert (dm.vocab_size, dm.pad_token_id) == (32, 0)
    assert not any(tmp_path.iterdir())  # nothing generated before prepare_data / setup


def test_batches_hold_normalized_audio_and_padded_labels(tiny_kwargs):
    dm = SpeechDataModule(**tiny_kwargs)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    values, mask, labels = batch["input_values"], batch["attention_mask"], batch["labels"]
    assert values.dtype == torch.float32 and values.shape == mask.shape
    assert labels.shape[0] == values.shape[0] == len(batch["ids"]) == len(batch["texts"])
    for row in range(values.shape[0]):
        real = values[row, mask[row].bool()]
        assert abs(real.mean()) < 1e-3 and abs(real.std() - 1) < 1e-2
        assert (values[row, ~mask[row].bool()] == 0).all()
        ids = labels[row][labels[row] != -100].tolist()
        assert dm.processor.tokenizer.decode(ids, group_tokens=False) == batch["texts"][row]
    assert (labels == -100).any() or len({len(t) for t in batch["texts"]}) == 1


def test_spec_augment_masks_only_training_audio(tiny_kwargs):
    masks = {"time_mask_prob": 1.0, "freq_mask_prob": 1.0}
    dm = SpeechDataModule(**tiny_kwargs, augmentation=masks, seed=0)
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["val"]
    raw = load_waveform(train.utterances[0].audio_path, 16000)
    masked = train[0]["waveform"]
    assert masked.shape == raw.shape and not torch.allclose(masked, raw, atol=1e-3)
    assert torch.equal(val[0]["waveform"], load_waveform(val.utterances[0].audio_path, 16000))


def test_time_masks_zero_spans_and_frequency_masks_remove_a_band():
    generator = torch.Generator().manual_seed(0)
    wave = torch.randn(16000, generator=generator)
    masked = mask_time(wave, count=2, max_width=800, generator=generator)
    zeroed = (masked == 0).sum()
    assert 0 < zeroed <= 1600 and torch.equal(masked[masked != 0], wave[masked != 0])
    filtered = mask_frequency(wave, 1, 2000.0, 16000, generator)
    removed = torch.fft.rfft(filtered).abs() < 1e-3
    assert 0 < removed.sum() <= 2000 / 8000 * removed.numel() + 1


def test_eval_noise_is_the_same_every_epoch_only_when_asked(tiny_kwargs):
    noise = Augmentation(noise_snr_db=(5.0, 5.0), noise_on_eval=True)
    dm = SpeechDataModule(**tiny_kwargs, augmentation=noise)
    dm.setup("validate")
    val = dm.datasets["val"]
    raw = load_waveform(val.utterances[0].audio_path, 16000)
    assert torch.equal(val[0]["waveform"], val[0]["waveform"])
    assert not torch.equal(val[0]["waveform"], raw)


def test_noise_is_mixed_at_the_requested_snr():
    wave = torch.sin(torch.linspace(0, 2000, 32000))
    noisy = add_noise(wave, 10.0, torch.Generator().manual_seed(0))
    snr = 10 * torch.log10(wave.pow(2).mean() / (noisy - wave).pow(2).mean())
    assert abs(snr - 10.0) < 0.1


def test_processor_saved_next_to_a_run_loads_back(tiny_kwargs, tmp_path):
    from transformers import Wav2Vec2Processor

    dm = SpeechDataModule(**tiny_kwargs)
    loaded = Wav2Vec2Processor.from_pretrained(str(dm.save_processor(tmp_path / "processor")))
    assert loaded.tokenizer.get_vocab() == build_processor().tokenizer.get_vocab()
    assert loaded.feature_extractor.do_normalize


def test_augmentation_options_reach_the_training_augment_and_only_noise_reaches_eval():
    options = Augmentation(
        noise_snr_db=[5.0, 20.0], noise_prob=0.5, noise_color="pink", noise_on_eval=True,
        freq_mask_prob=0.3, freq_mask_count=2, freq_mask_max_hz=400.0,
        time_mask_prob=0.4, time_mask_count=3, time_mask_max_ms=60.0,
    )  # fmt: skip
    train = options.train_augment(8000)
    expected = {k: v for k, v in asdict(options).items() if k != "noise_on_eval"}
    assert train.sample_rate == 8000 and train.noise_snr_db == (5.0, 20.0)
    assert {k: getattr(train, k) for k in expected if k != "noise_snr_db"} == {
        k: v for k, v in expected.items() if k != "noise_snr_db"
    }
    evaluation = options.eval_augment(8000)
    assert evaluation.noise_color == "pink" and evaluation.time_mask_prob == 0.0
    assert Augmentation().eval_augment(8000) is None
