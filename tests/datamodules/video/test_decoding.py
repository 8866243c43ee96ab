"""The video source: torchcodec decoding (faked here: it is an optional extra) and sampling."""

import json
import sys
import types

import pytest
import torch

from datamodules.errors import DataError
from datamodules.video import InstructionalVideoDataModule, VideoFileDataset, list_videos

DURATIONS = {"short": 2.2, "long": 4.5}


class FakeVideoDecoder:
    """torchcodec's VideoDecoder API; the frame played at t seconds has every pixel = 10 t."""

    def __init__(self, source: str, dimension_order: str = "NHWC") -> None:
        assert dimension_order == "NCHW"
        name = source.rsplit("/", 1)[-1].split(".")[0]
        if name == "broken":
            raise RuntimeError("Could not open input file")
        self.metadata = types.SimpleNamespace(
            duration_seconds=DURATIONS[name], begin_stream_seconds=0.0
        )

    def get_frames_played_at(self, seconds: list[float]):
        assert all(0 <= s < self.metadata.duration_seconds for s in seconds)
        data = torch.stack(
            [torch.full((3, 40, 60), round(10 * s), dtype=torch.uint8) for s in seconds]
        )
        return types.SimpleNamespace(data=data)


@pytest.fixture
def fake_torchcodec(monkeypatch):
    package = types.ModuleType("torchcodec")
    decoders = types.ModuleType("torchcodec.decoders")
    decoders.VideoDecoder = FakeVideoDecoder
    package.decoders = decoders
    monkeypatch.setitem(sys.modules, "torchcodec", package)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", decoders)


@pytest.fixture
def video_dir(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("long.mp4", "short.MKV", "notes.txt"):
        (folder / name).write_bytes(b"")
    return folder


def test_missing_torchcodec_is_one_line_saying_how_to_install(monkeypatch, video_dir):
    monkeypatch.setitem(sys.modules, "torchcodec", None)
    with pytest.raises(DataError) as error:
        InstructionalVideoDataModule(source="video", video_dir=str(video_dir))
    assert "pip install torchcodec" in str(error.value) and "\n" not in str(error.value)


def test_list_videos_finds_video_files_sorted(video_dir):
    assert [p.name for p in list_videos(video_dir)] == ["long.mp4", "short.MKV"]
    with pytest.raises(DataError, match="video folder not found"):
        list_videos(video_dir / "nope")


def test_videos_are_sampled_at_fps_resized_and_cropped(fake_torchcodec, video_dir):
    item = VideoFileDataset(list_videos(video_dir), fps=2.0, frame_size=16)[0]
    assert item["video_id"] == "long"
    assert item["timestamps"].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    assert item["frames"].shape == (9, 3, 16, 16)
    assert torch.allclose(item["frames"][:, 0, 0, 0] * 255, item["timestamps"] * 10, atol=0.6)


def test_videos_can_be_sampled_to_a_fixed_number_of_frames(fake_torchcodec, video_dir):
    item = VideoFileDataset(list_videos(video_dir), num_frames=3, frame_size=8)[1]
    assert item["frames"].shape == (3, 3, 8, 8)
    assert torch.allclose(item["timestamps"], torch.tensor([2.2 / 6, 2.2 / 2, 2.2 * 5 / 6]))


def test_predict_dataloader_pads_decoded_videos_with_a_mask(fake_torchcodec, video_dir):
    data = InstructionalVideoDataModule(source="video", video_dir=str(video_dir), batch_size=2)
    assert data.vocab_size is None  # no annotations: decoding only
    batch = next(iter(data.predict_dataloader()))
    assert batch["video_ids"] == ["long", "short"]
    assert batch["frames"].shape == (2, 5, 3, 32, 32)  # 4.5 s and 2.2 s at 1 fps
    assert batch["frame_mask"].sum(1).tolist() == [5, 3]


def test_video_source_aligns_annotated_videos(fake_torchcodec, video_dir, tmp_path):
    annotations = tmp_path / "annotations.json"
    database = {
        "long": {"subset": "training", "annotations": [{"segment": [1, 3], "sentence": "stir"}]},
        "short": {"subset": "validation", "annotations": [{"segment": [0, 1], "sentence": "pour"}]},
    }
    annotations.write_text(json.dumps({"database": database}))
    data = InstructionalVideoDataModule(
        source="video", video_dir=str(video_dir), annotations=str(annotations), fps=2.0
    )
    batch = next(iter(data.train_dataloader()))
    assert batch["frames"].shape == (1, 9, 3, 32, 32)
    assert batch["segments"][0].tolist() == [[2.0, 5.0]]
    assert batch["frame_labels"][0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0]


def test_undecodable_video_is_one_line_naming_it(fake_torchcodec, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"")
    with pytest.raises(DataError, match=r"video broken: .*broken.mp4 cannot be decoded"):
        VideoFileDataset(list_videos(tmp_path))[0]
