"""InstructionalVideoDataModule on procedural videos: align and pretrain batches, padding, tokens."""

import pickle

import torch

from datamodules.video import InstructionalVideoDataModule

SMALL = dict(
    num_train_videos=6,
    num_val_videos=3,
    num_test_videos=3,
    min_steps=1,
    max_steps=4,
    min_step_frames=3,
    max_step_frames=6,
    min_gap_frames=1,
    max_gap_frames=4,
    batch_size=3,
)


def test_vocab_size_and_frame_shape_are_known_right_after_init():
    data = InstructionalVideoDataModule(frame_size=24, **SMALL)
    assert data.frame_shape == (3, 24, 24) and data.feature_dim is None
    assert data.vocab_size == len(data.tokenizer) > 50
    assert data.pad_token_id == 0
    assert data.videos is None  # nothing generated yet
    again = InstructionalVideoDataModule(seed=5, **SMALL)  # same vocabulary for any seed
    assert again.tokenizer.get_vocab() == data.tokenizer.get_vocab()


def test_align_batch_has_the_documented_keys_shapes_and_padding_masks():
    data = InstructionalVideoDataModule(**SMALL)
    batch = next(iter(data.val_dataloader()))
    videos = data.videos["val"]
    lengths = torch.tensor([v.num_frames for v in videos])
    steps = torch.tensor([len(v.texts) for v in videos])
    B, T, S = 3, int(lengths.max()), int(steps.max())
    assert len(set(lengths.tolist())) > 1  # the padding below is exercised

    assert batch["frames"].shape == (B, T, 3, 32, 32) and batch["frames"].dtype == torch.float32
    assert torch.equal(batch["frame_mask"].sum(1), lengths)
    assert torch.equal(batch["step_mask"].sum(1), steps)
    assert (batch["frame_labels"] == -100).eq(~batch["frame_mask"]).all()
    assert batch["frames"][~batch["frame_mask"]].eq(0).all()
    assert batch["segments"].shape == (B, S, 2) and batch["segments"].dtype == torch.float32
    assert batch["step_input_ids"].shape[:2] == (B, S)
    assert batch["step_attention_mask"].shape == batch["step_input_ids"].shape
    assert batch["step_attention_mask"].sum(-1).ge(2).all()  # padded steps are [CLS] [SEP]
    assert batch["step_text_ids"][~batch["step_mask"]].eq(-1).all()
    assert batch["video_ids"] == [v.video_id for v in videos]
    assert batch["step_texts"] == [v.texts for v in videos]
    for b, video in enumerate(videos):
        for k, text in enumerate(video.texts):
            ids = batch["step_input_ids"][b, k][batch["step_attention_mask"][b, k].bool()]
            assert data.tokenizer.decode(ids, skip_special_tokens=True) == text


def test_frame_labels_match_segments_in_a_batch():
    data = InstructionalVideoDataModule(**SMALL)
    batch = next(iter(data.train_dataloader()))
    for b in range(len(batch["video_ids"])):
        labels = batch["frame_labels"][b]
        for k in range(int(batch["step_mask"][b].sum())):
            start, end = batch["segments"][b, k].long().tolist()
            assert labels[start : end + 1].eq(k + 1).all()
            assert start <= end < batch["frame_mask"][b].sum()
        assert (
            labels[batch["frame_mask"][b]].gt(0).sum()
            == (batch["segments"][b, :, 1] - batch["segments"][b, :, 0] + 1)[
                batch["step_mask"][b]
            ].sum()
        )


def test_resampling_gives_every_video_the_same_length_and_keeps_every_step():
    data = InstructionalVideoDataModule(num_frames=20, **SMALL)
    batch = next(iter(data.test_dataloader()))
    assert batch["frames"].shape[1] == 20 and batch["frame_mask"].all()
    for b in range(len(batch["video_ids"])):
        present = set(batch["frame_labels"][b].unique().tolist()) - {0}
        assert present == set(range(1, int(batch["step_mask"][b].sum()) + 1))


def test_test_batches_mark_heldout_steps():
    data = InstructionalVideoDataModule(**SMALL)
    batch = next(iter(data.test_dataloader()))
    assert batch["step_heldout"].any(dim=1).all()
    val = next(iter(data.val_dataloader()))
    assert not val["step_heldout"].any()


def test_pretrain_batches_pair_each_frame_with_its_own_step_text():
    data = InstructionalVideoDataModule(task="pretrain", **{**SMALL, "batch_size": 8})
    batch = next(iter(data.train_dataloader()))
    assert batch["frames"].shape == (8, 3, 32, 32)
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    videos = {v.video_id: v for v in data.videos["train"]}
    for i, video_id in enumerate(batch["video_ids"]):
        video, frame = videos[video_id], int(batch["frame_index"][i])
        k = video.texts.index(batch["texts"][i])
        start, end = video.segments[k]
        assert start <= frame <= end
        assert batch["text_ids"][i] == video.text_ids[k]
        rendered = data.generator.render_frames(video, [frame])[0]
        assert torch.equal(batch["frames"][i], rendered)
        ids = batch["input_ids"][i][batch["attention_mask"][i].bool()]
        assert data.tokenizer.decode(ids, skip_special_tokens=True) == batch["texts"][i]


def test_pretrain_covers_every_step_once_per_epoch_and_validation_is_fixed():
    data = InstructionalVideoDataModule(task="pretrain", **SMALL)
    data.setup("fit")
    assert len(data.dataset("train")) == sum(len(v.texts) for v in data.videos["train"])
    first = torch.cat([b["frame_index"] for b in data.val_dataloader()])
    second = torch.cat([b["frame_index"] for b in data.val_dataloader()])
    assert torch.equal(first, second)


def test_every_dataloader_yields_batches_and_datasets_pickle_for_workers():
    for task in ("align", "pretrain"):
        data = InstructionalVideoDataModule(task=task, **SMALL)
        for loader in (data.train_dataloader(), data.val_dataloader(), data.test_dataloader()):
            assert next(iter(loader))
        pickle.loads(pickle.dumps(data.dataset("train")))
        pickle.loads(pickle.dumps(data.train_dataloader().collate_fn))
    predict = next(iter(InstructionalVideoDataModule(**SMALL).predict_dataloader()))
    assert predict["frames"].ndim == 5


def test_a_trained_tokenizer_is_saved_in_the_cache_and_reloaded(tmp_path):
    InstructionalVideoDataModule(cache_dir=str(tmp_path), **SMALL)
    saved = list((tmp_path / "video").glob("wordpiece-*/tokenizer.json"))
    assert len(saved) == 1
    data = InstructionalVideoDataModule(tokenizer=str(saved[0].parent), **SMALL)
    assert data.tokenizer("chop onion")["input_ids"][0] == data.tokenizer.cls_token_id


def test_a_lightning_trainer_runs_on_the_datamodule(tmp_path):
    import lightning as L

    class MeanFrame(L.LightningModule):
        def __init__(self, vocab_size: int) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(vocab_size, 1)

        def training_step(self, batch, batch_idx):
            frames = batch["frames"][batch["frame_mask"]]
            return frames.mean() + self.embed(batch["step_input_ids"]).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = InstructionalVideoDataModule(**SMALL)
    trainer = L.Trainer(
        fast_dev_run=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(MeanFrame(data.vocab_size), datamodule=data)
    assert trainer.state.finished
