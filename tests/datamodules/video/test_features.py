"""The features source: YouCook2-style annotations + <video_id>.npy, and its bad-input errors."""

import copy

import numpy as np
import pytest
import torch

from casebook.common.errors import DataError
from datamodules.video import InstructionalVideoDataModule
from datamodules.video.tokenizer import train_wordpiece

from .conftest import FEATURE_DIM, tiny_database


def features_data(annotations, features, **kwargs) -> InstructionalVideoDataModule:
    return InstructionalVideoDataModule(
        source="features",
        annotations=str(annotations),
        features_dir=str(features),
        **{"batch_size": 2, **kwargs},
    )


def test_features_source_reads_splits_and_feature_dim(youcook2):
    data = features_data(*youcook2)
    assert data.feature_dim == FEATURE_DIM and data.frame_shape is None
    data.setup("fit")
    assert [v.video_id for v in data.videos["train"]] == ["vid_a", "vid_b", "vid_c"]
    assert [v.video_id for v in data.videos["val"]] == ["vid_v"]
    assert [v.video_id for v in data.videos["test"]] == ["vid_t"]


def test_segments_in_seconds_become_inclusive_frame_indices_at_fps(make_youcook2):
    database = {
        "v": {
            "subset": "training",
            "annotations": [
                {"segment": [1.0, 2.5], "sentence": "crack the eggs"},
                {"segment": [3.2, 4.0], "sentence": "whisk"},
            ],
        }
    }
    annotations, features = make_youcook2(database, {"v": 10})  # 10 frames = 5 s at 2 fps
    data = features_data(annotations, features, fps=2.0)
    data.setup("fit")
    assert data.videos["train"][0].segments.tolist() == [[2, 4], [6, 7]]
    batch = next(iter(data.train_dataloader()))
    assert batch["frame_labels"][0].tolist() == [0, 0, 1, 1, 1, 0, 2, 2, 0, 0]


def test_align_batch_pads_feature_sequences_and_step_lists(youcook2):
    data = features_data(*youcook2)
    train, collate = data.dataset("train"), data.train_dataloader().collate_fn
    batch = collate([train[i] for i in range(3)])  # vid_a (12 frames, 2 steps), vid_b, vid_c
    assert "frames" not in batch
    assert batch["features"].shape == (3, 16, FEATURE_DIM)
    assert batch["frame_mask"].sum(1).tolist() == [12, 5, 16]
    assert batch["step_mask"].sum(1).tolist() == [2, 1, 3]
    assert batch["segments"][0, :2].tolist() == [[2.0, 4.0], [7.0, 9.0]]
    # feature t of a video is [t, ...] + offset: the right rows in the right order
    assert batch["features"][2, :16, 0].tolist() == (torch.arange(16) + 2000.0).tolist()
    # identical sentences in different videos share a text id
    assert batch["step_text_ids"][0, 1] == batch["step_text_ids"][1, 0]


def test_pretrain_pairs_each_feature_row_with_its_segment_sentence(youcook2):
    data = features_data(*youcook2, task="pretrain", batch_size=6)
    batch = next(iter(data.train_dataloader()))
    assert batch["features"].shape == (6, FEATURE_DIM)
    videos = {v.video_id: (i, v) for i, v in enumerate(data.videos["train"])}
    for row, video_id, text, frame in zip(
        batch["features"], batch["video_ids"], batch["texts"], batch["frame_index"], strict=True
    ):
        offset, video = videos[video_id]
        start, end = video.segments[video.texts.index(text)]
        assert start <= frame <= end
        assert row[0] == frame + 1000 * offset


def test_resampling_maps_segments_onto_the_fixed_length(youcook2):
    data = features_data(*youcook2, num_frames=8, batch_size=3)
    batch = next(iter(data.train_dataloader()))
    assert batch["features"].shape == (3, 8, FEATURE_DIM) and batch["frame_mask"].all()
    for b in range(3):
        present = set(batch["frame_labels"][b].unique().tolist()) - {0}
        assert present == set(range(1, int(batch["step_mask"][b].sum()) + 1))


def test_tokenizer_is_trained_on_training_sentences_or_loaded_from_a_folder(youcook2, tmp_path):
    data = features_data(*youcook2)
    assert data.vocab_size == len(data.tokenizer)
    assert data.tokenizer.decode(data.tokenizer("whisk the eggs")["input_ids"][1:-1]) == (
        "whisk the eggs"
    )
    folder = tmp_path / "my_tokenizer"
    train_wordpiece(["a pretrained vocabulary of words"]).save_pretrained(folder)
    loaded = features_data(*youcook2, tokenizer=str(folder))
    assert loaded.vocab_size == len(loaded.tokenizer) != data.vocab_size


def _break(database: dict, video_id: str, change) -> dict:
    database = copy.deepcopy(database)
    change(database[video_id])
    return database


def _set_segment(segment):
    return lambda entry: entry["annotations"][0].__setitem__("segment", segment)


BAD_INPUTS = {
    "reversed segment": (_set_segment([5, 2]), "reversed"),
    "negative segment": (_set_segment([-1, 2]), "negative"),
    "segment past the end": (_set_segment([2, 40]), "past the video's end"),
    "empty sentence": (
        lambda entry: entry["annotations"][0].__setitem__("sentence", "  "),
        "empty sentence",
    ),
    "no annotations": (lambda entry: entry.__setitem__("annotations", []), "no annotations"),
    "unknown subset": (lambda entry: entry.__setitem__("subset", "train"), "subset"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_annotation_raises_one_line_naming_the_video(case, make_youcook2):
    change, problem = BAD_INPUTS[case]
    database, lengths = tiny_database()
    annotations, features = make_youcook2(_break(database, "vid_c", change), lengths)
    with pytest.raises(DataError) as error:
        features_data(annotations, features).setup("fit")
    message = str(error.value)
    assert "\n" not in message
    assert "vid_c" in message and problem in message and "annotations.json" in message


def test_missing_feature_file_raises_one_line_naming_the_video_and_file(youcook2):
    annotations, features = youcook2
    (features / "vid_b.npy").unlink()
    with pytest.raises(DataError) as error:
        features_data(annotations, features).setup("fit")
    message = str(error.value)
    assert "\n" not in message and "vid_b" in message and "vid_b.npy" in message
    assert "missing" in message


def test_feature_file_of_the_wrong_width_raises(youcook2):
    annotations, features = youcook2
    np.save(features / "vid_v.npy", np.zeros((6, FEATURE_DIM + 1), dtype=np.float32))
    with pytest.raises(DataError, match=r"video vid_v: .* D=7"):
        features_data(annotations, features).setup("fit")


def test_bad_videos_can_be_skipped_and_counted_instead(make_youcook2):
    database, lengths = tiny_database()
    database = _break(database, "vid_a", _set_segment([9, 3]))
    annotations, features = make_youcook2(database, lengths)
    (features / "vid_t.npy").unlink()
    data = features_data(annotations, features, skip_bad_videos=True)
    with pytest.warns(UserWarning, match="skipped 2 bad videos"):
        data.setup("fit")
    assert [v.video_id for v in data.videos["train"]] == ["vid_b", "vid_c"]
    assert data.videos["test"] == []


def test_missing_annotation_file_or_database_key_is_one_line(tmp_path):
    with pytest.raises(DataError, match="annotation file not found"):
        features_data(tmp_path / "nope.json", tmp_path)
    (tmp_path / "bad.json").write_text('{"videos": {}}')
    with pytest.raises(DataError, match="no 'database' object"):
        features_data(tmp_path / "bad.json", tmp_path)
