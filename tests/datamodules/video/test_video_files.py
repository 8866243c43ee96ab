"""The video source: decoding and sampling, with torchcodec's interface faked (it is an optional
extra) and with real files written and decoded by PyAV (and torchcodec, where it loads)."""

import json
import sys
import types

import pytest
import torch

from casebook.common.errors import DataError
from datamodules.video import InstructionalVideoDataModule, VideoFileDataset, list_videos
from datamodules.video.video_files import PyAVDecoder, video_decoder_class

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


def hide_torchcodec(monkeypatch) -> None:
    for name in ("torchcodec", "torchcodec.decoders"):
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_torchcodec_is_one_line_saying_how_to_install(monkeypatch, video_dir):
    hide_torchcodec(monkeypatch)
    with pytest.raises(DataError) as error:
        InstructionalVideoDataModule(
            source="video", video_dir=str(video_dir), video_decoder="torchcodec"
        )
    assert "pip install torchcodec" in str(error.value) and "\n" not in str(error.value)


def test_auto_decoder_falls_back_to_pyav_and_says_so_when_neither_loads(monkeypatch, video_dir):
    hide_torchcodec(monkeypatch)
    assert video_decoder_class("auto") is PyAVDecoder
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(DataError) as error:
        InstructionalVideoDataModule(source="video", video_dir=str(video_dir))
    message = str(error.value)
    assert "pip install torchcodec" in message and "pip install av" in message
    assert "\n" not in message


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


# Real files: written with PyAV's encoder; every frame i of a 10 fps clip is grey level 8 i.
FPS, SECONDS = 10, 3.0


def write_grey_ramp(path, width=48, height=32) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "1"}  # near-lossless: flat grey survives the round trip
        for i in range(int(FPS * SECONDS)):
            image = torch.full((height, width, 3), 8 * i, dtype=torch.uint8).numpy()
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def decoders() -> list:
    """PyAV, and torchcodec listed as skipped (`pytest -ra` says why) where it cannot load: it
    needs system FFmpeg libraries; PyAV covers decoding without them."""
    try:
        video_decoder_class("torchcodec")
        missing = ""
    except DataError as error:
        missing = str(error)
    skip = pytest.mark.skipif(bool(missing), reason=missing or "torchcodec loads")
    return ["pyav", pytest.param("torchcodec", marks=skip)]


@pytest.fixture
def real_videos(tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    write_grey_ramp(folder / "ramp.mp4")
    return folder


@pytest.mark.parametrize("backend", decoders())
def test_real_video_frames_are_the_ones_played_at_each_time(real_videos, backend):
    item = VideoFileDataset(list_videos(real_videos), fps=2.0, frame_size=16, backend=backend)[0]
    assert item["timestamps"].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert item["frames"].shape == (6, 3, 16, 16)
    grey = item["frames"].mean(dim=(1, 2, 3)) * 255  # frame played at t is frame 10 t: grey 80 t
    assert torch.allclose(grey, item["timestamps"] * 80, atol=3.0), grey.tolist()


@pytest.mark.parametrize("backend", decoders())
def test_real_video_resampled_to_a_fixed_number_of_frames(real_videos, backend):
    item = VideoFileDataset(list_videos(real_videos), num_frames=3, frame_size=8, backend=backend)[
        0
    ]
    assert torch.allclose(item["timestamps"], torch.tensor([0.5, 1.5, 2.5]))
    grey = item["frames"].mean(dim=(1, 2, 3)) * 255
    assert torch.allclose(grey, torch.tensor([40.0, 120.0, 200.0]), atol=3.0), grey.tolist()


def test_real_annotated_video_trains_from_decoded_frames(real_videos, tmp_path):
    annotations = tmp_path / "annotations.json"
    database = {
        "ramp": {"subset": "training", "annotations": [{"segment": [1, 2], "sentence": "stir"}]}
    }
    annotations.write_text(json.dumps({"database": database}))
    data = InstructionalVideoDataModule(
        source="video", video_dir=str(real_videos), annotations=str(annotations),
        video_decoder="pyav",
    )  # fmt: skip
    batch = next(iter(data.train_dataloader()))
    assert batch["frames"].shape == (1, 3, 3, 32, 32)  # 3 s at 1 fps
    assert batch["frame_labels"][0].tolist() == [0, 1, 0]
    grey = batch["frames"][0].mean(dim=(1, 2, 3)) * 255
    assert torch.allclose(grey, torch.tensor([0.0, 80.0, 160.0]), atol=3.0)


def test_corrupt_real_video_is_one_line_naming_it(real_videos):
    path = real_videos / "ramp.mp4"
    path.write_bytes(path.read_bytes()[:300])  # truncated: header only
    with pytest.raises(DataError) as error:
        VideoFileDataset(list_videos(real_videos), backend="pyav")[0]
    assert "video ramp:" in str(error.value) and "\n" not in str(error.value)
