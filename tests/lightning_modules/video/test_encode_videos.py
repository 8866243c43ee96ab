"""Real videos, as the README runs them: pre-train on the decoded files, encode every video once
into `<video_id>.npy` with `casebook predict`, then train the step aligner on those features.

The three commands run in one fresh interpreter (`casebook_commands`): each new interpreter
spends ~15 s importing torch, Lightning and transformers on a busy 2-core machine.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from casebook_runner import casebook_commands

from datamodules.video import VideoFileDataset, list_videos
from lightning_modules.video import ClipEncoders, ClipPretrainer, StepAligner

REPO = Path(__file__).resolve().parents[3]
FPS = 2.0  # frames (and cached features) per second, the same in all three commands
CLIP_FPS = 10  # frame rate of the written files
RED, GREEN, BLUE, WHITE = (220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 230, 230)
VIDEOS = {  # id: (subset, colour per second (the last one may be cut), duration s, steps)
    "omelette": (
        "training",
        [RED, GREEN, BLUE],
        3.0,
        [([1, 2], "whisk the eggs"), ([2, 3], "fold the omelette")],
    ),
    "toast": (
        "training",
        [WHITE, RED, GREEN],
        2.5,
        [([0, 1], "slice the bread"), ([1, 2.5], "toast the bread")],
    ),
    "salad": ("validation", [GREEN, BLUE], 2.0, [([0.5, 1.5], "whisk the eggs")]),
}


def write_colour_clip(path: Path, colours: list[tuple], seconds: float, size=(32, 24)) -> None:
    """An mp4 (mpeg4, via PyAV's bundled FFmpeg) showing colours[k] during second k."""
    import av

    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * CLIP_FPS)):
            image = np.empty((height, width, 3), dtype=np.uint8)
            image[:] = colours[i // CLIP_FPS]
            image[:, : width // 4] = 0  # a dark band: frames are not flat after the crop
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture
def annotated_videos(tmp_path) -> tuple[Path, Path]:
    """(folder of three real mp4 files, their YouCook2-style annotation JSON)."""
    folder = tmp_path / "videos"
    folder.mkdir()
    database = {}
    for video_id, (subset, colours, seconds, steps) in VIDEOS.items():
        write_colour_clip(folder / f"{video_id}.mp4", colours, seconds)
        annotations = [{"segment": segment, "sentence": text} for segment, text in steps]
        database[video_id] = {"subset": subset, "annotations": annotations}
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps({"database": database}))
    return folder, annotations


TINY_ENCODER = [
    "--model.encoder.cnn_width=4",
    "--model.encoder.text_hidden=16",
    "--model.encoder.text_layers=1",
    "--model.encoder.text_heads=2",
    "--model.encoder.embed_dim=16",
]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def test_videos_are_encoded_once_into_features_the_aligner_trains_on(
    annotated_videos, cli_env, tmp_path
):
    video_dir, annotations = annotated_videos
    clip_root, aligner_root, features = tmp_path / "clip", tmp_path / "aligner", tmp_path / "npy"
    real_videos = [
        "--data.source=video",
        f"--data.video_dir={video_dir}",
        "--data.video_decoder=pyav",
        f"--data.annotations={annotations}",
        f"--data.fps={FPS}",
        "--data.frame_size=16",
        "--data.batch_size=4",
    ]
    clip = ["--config", str(REPO / "configs/clip_pretrainer.yaml"), *real_videos, *TINY_ENCODER]
    clip += [f"--trainer.default_root_dir={clip_root}", *QUIET]
    pretrain = [*clip, "--config", str(REPO / "configs/presets/csv.yaml")]
    pretrain += ["--trainer.max_steps=1", "--trainer.limit_val_batches=1"]
    encode = [*clip, "--config", str(REPO / "configs/presets/npy_predictions.yaml")]
    encode += [
        "--ckpt_path=best",
        "--return_predictions=false",
        f"--trainer.callbacks.output_dir={features}",
    ]
    align = ["--config", str(REPO / "configs/step_aligner.yaml")]
    align += ["--config", str(REPO / "configs/presets/csv.yaml"), *QUIET]
    align += [
        "--data.source=features",
        f"--data.annotations={annotations}",
        f"--data.features_dir={features}",
        f"--data.fps={FPS}",
        "--data.batch_size=2",
        f"--model.pretrained={clip_root / 'encoders'}",
        "--model.hidden=16",
        "--model.layers=1",
        f"--trainer.default_root_dir={aligner_root}",
        "--trainer.max_steps=1",
        "--trainer.limit_val_batches=1",
    ]
    result = casebook_commands(
        ["fit", *pretrain], ["predict", *encode], ["fit", *align], env=cli_env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("finished:") == 3

    # one T×D file per video file, T = the video's length at FPS, D = the shared embedding
    assert sorted(p.name for p in features.iterdir()) == [f"{v}.npy" for v in sorted(VIDEOS)]
    encoders = ClipEncoders.load(clip_root / "encoders").eval()  # the best checkpoint's
    decoded = VideoFileDataset(list_videos(video_dir), FPS, frame_size=16, backend="pyav")
    for item in decoded:
        cached = np.load(features / f"{item['video_id']}.npy")
        seconds = VIDEOS[item["video_id"]][2]
        assert cached.shape == (math.ceil(seconds * FPS), 16)
        with torch.no_grad():
            expected = encoders.encode_frames(item["frames"])
        np.testing.assert_allclose(cached, expected.numpy(), atol=1e-5)

    # the aligner read them as the pretrained frame embeddings: no frame encoder of its own
    state = torch.load(aligner_root / "checkpoints/last.ckpt", weights_only=False)["state_dict"]
    assert "encoders.text_projection.weight" in state
    assert not any(key.startswith("encoders.frame_") for key in state)


@pytest.mark.parametrize("head", ["attend_align", "zero_shot"])
def test_aligner_over_cached_embeddings_is_the_aligner_over_frames(
    head, align_data, data_links, tiny_encoder, tmp_path
):
    batch = next(iter(align_data.train_dataloader()))
    torch.manual_seed(0)
    pretrainer = ClipPretrainer(encoder=tiny_encoder, **data_links).eval()
    folder = pretrainer.encoders.save(tmp_path / "encoders")
    with torch.no_grad():
        cached = pretrainer.predict_step(batch, 0)  # what the writer saves, {video_id: (T, E)}
    lengths = batch["frame_mask"].sum(1).tolist()
    assert [len(cached[v]) for v in batch["video_ids"]] == lengths
    features = torch.nn.utils.rnn.pad_sequence([cached[v] for v in batch["video_ids"]], True)
    feature_batch = {**batch, "features": features}

    over_frames = StepAligner(head=head, pretrained=str(folder), **data_links).eval()
    feature_links = {**data_links, "feature_dim": tiny_encoder.embed_dim, "frame_shape": None}
    over_features = StepAligner(head=head, pretrained=str(folder), **feature_links).eval()
    if over_frames.head is not None:
        over_features.head.load_state_dict(over_frames.head.state_dict())
    with torch.no_grad():
        expected = over_frames(batch)["logits"]
        logits = over_features(feature_batch)["logits"]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
