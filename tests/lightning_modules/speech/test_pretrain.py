"""Self-supervised pre-training: masking, the contrastive objective, and the teacher loading it."""

import numpy as np
import pytest
import torch
from tiny_speech import TINY_NETWORK, network_options
from transformers import Wav2Vec2ForCTC

from datamodules.speech import SpeechDataModule
from lightning_modules.speech import Wav2Vec2CTCRecipe, Wav2Vec2Pretrainer
from lightning_modules.speech.pretrain import masked_accuracy

TINY = {
    "network": TINY_NETWORK | {"num_hidden_layers": 2},
    "num_codevectors_per_group": 16,
    "codevector_dim": 16,
    "proj_codevector_dim": 16,
    "num_negatives": 10,
}


@pytest.fixture
def unlabeled(tiny_datamodule):
    """The tiny corpus' audio without transcripts."""
    return SpeechDataModule(**{**tiny_datamodule.hparams, "labeled": False})


def test_unlabeled_batches_carry_audio_and_no_labels(unlabeled):
    batch = next(iter(unlabeled.train_dataloader()))
    assert batch["input_values"].shape[0] == 4 and batch["labels"].shape == (4, 0)
    assert all(text == "" for text in batch["texts"])


def test_masks_cover_real_frames_only_and_negatives_come_from_the_same_utterance(unlabeled):
    np.random.seed(0)
    pretrainer = Wav2Vec2Pretrainer(**TINY)
    batch = next(iter(unlabeled.val_dataloader()))
    mask, negatives, real = pretrainer.masks(batch)
    assert mask.shape == real.shape and not (mask & ~real).any()
    share = mask.sum() / real.sum()
    assert 0.2 < share < 0.9  # spans of 10 started at 65% of the frames overlap: about half
    frames = real.shape[1]
    rows = negatives // frames  # flattened (batch * frames) indices: the utterance they are in
    assert (rows == torch.arange(len(real))[:, None, None]).all()
    assert real.flatten()[negatives].all()  # never a padded frame


def test_masked_accuracy_counts_frames_whose_own_target_scores_highest():
    quantized = torch.eye(4).view(1, 4, 4)  # four orthogonal targets
    projected = quantized.clone()
    projected[0, 3] = quantized[0, 0]  # frame 3 points at frame 0's target
    negatives = torch.tensor([[[1, 2], [0, 2], [0, 1], [0, 1]]])
    mask = torch.tensor([[True, True, False, True]])
    assert masked_accuracy(projected, quantized, negatives, mask) == pytest.approx(2 / 3)


def test_pretraining_lowers_the_contrastive_loss_and_logs_its_terms(unlabeled):
    torch.manual_seed(0)
    np.random.seed(0)
    pretrainer = Wav2Vec2Pretrainer(**TINY)
    batch = next(iter(unlabeled.train_dataloader()))
    optimizer = torch.optim.AdamW(pretrainer.parameters(), lr=3e-3)
    first = pretrainer.model_step(batch)
    assert set(first) == {
        "loss", "contrastive_loss", "diversity_loss", "codevector_perplexity", "masked_accuracy",
    }  # fmt: skip
    # per masked frame, random vectors: about log(1 + negatives)
    assert first["contrastive_loss"].item() == pytest.approx(np.log(11), rel=0.3)
    losses = []
    for _ in range(40):
        np.random.seed(1)  # the same masks each step: a fixed task to fit
        step = pretrainer.model_step(batch)
        optimizer.zero_grad()
        step["loss"].backward()
        optimizer.step()
        losses.append(step["contrastive_loss"].item())
    assert losses[-1] < 0.7 * losses[0]


def test_the_teacher_starts_from_the_pretrained_body_with_a_new_ctc_head(tmp_path):
    torch.manual_seed(0)
    pretrainer = Wav2Vec2Pretrainer(**TINY)
    directory = pretrainer.export(tmp_path / "pretrained")
    teacher = Wav2Vec2CTCRecipe(pretrained=str(directory))
    body = pretrainer.model.wav2vec2.state_dict()
    for key, value in teacher.model.wav2vec2.state_dict().items():
        if key != "masked_spec_embed":
            assert torch.equal(value, body[key]), key
    assert teacher.model.lm_head.out_features == 32
    # in train mode like a fresh model (from_pretrained returns eval mode: no dropout, no masks)
    assert all(module.training for module in teacher.modules())
    assert isinstance(Wav2Vec2ForCTC.from_pretrained(directory), Wav2Vec2ForCTC)


def test_pretrain_config_fits_exports_and_the_teacher_fine_tunes_from_it(
    cli_env, tiny_cache, tmp_path
):
    from pathlib import Path

    from casebook_runner import casebook

    repo = Path(__file__).resolve().parents[3]
    env = cli_env | {"CASEBOOK_CACHE": str(tiny_cache), "OMP_NUM_THREADS": "1"}
    tiny = [
        "--data.corpus.num_train_sentences=12", "--data.corpus.num_val_sentences=4",
        "--data.corpus.num_test_sentences=4", "--data.batch_size=4", "--trainer.max_steps=3",
        "--trainer.max_time=null", "--trainer.val_check_interval=3",
        "--trainer.enable_progress_bar=false", "--trainer.log_every_n_steps=1",
        "--config", str(repo / "configs/presets/csv.yaml"),
    ]  # fmt: skip
    arch = [f"--model.{k}={v}" for k, v in TINY.items() if k != "network"]
    arch += network_options(num_hidden_layers=2)
    pretrain = casebook(
        "fit", "--config", str(repo / "configs/speech_pretrain.yaml"), *tiny, *arch,
        f"--trainer.default_root_dir={tmp_path / 'pretrain'}", env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert pretrain.returncode == 0, pretrain.stderr[-2000:]
    metrics = (tmp_path / "pretrain").rglob("metrics.csv")
    header = next(metrics).read_text().splitlines()[0]
    for name in ("contrastive_loss", "diversity_loss", "codevector_perplexity", "masked_accuracy"):
        assert f"train/{name}" in header and f"val/{name}" in header, name
    exported = tmp_path / "pretrain" / "pretrained"
    teacher = casebook(
        "fit", "--config", str(repo / "configs/speech_teacher.yaml"), *tiny,
        f"--model.pretrained={exported}", f"--trainer.default_root_dir={tmp_path / 'teacher'}",
        env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert teacher.returncode == 0, teacher.stderr[-2000:]
    assert (tmp_path / "teacher" / "hf" / "model.safetensors").is_file()
