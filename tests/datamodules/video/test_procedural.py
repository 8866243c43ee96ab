"""The procedural generator: deterministic, zero-shot splits, consistent labels, visible actions."""

import numpy as np
import pytest
import torch

from datamodules.video.annotations import frame_labels
from datamodules.video.procedural import (
    ACTIONS,
    DEFAULT_HELDOUT_STEPS,
    OBJECT_NAMES,
    ProceduralVideoGenerator,
    parse_heldout_steps,
    step_class,
)


@pytest.fixture(scope="module")
def generator():
    return ProceduralVideoGenerator(seed=3)


def test_generator_is_deterministic_per_seed():
    first, again, other = (ProceduralVideoGenerator(seed=s) for s in (7, 7, 8))
    a, b, c = (g.make_video("train", 4) for g in (first, again, other))
    assert a.texts == b.texts and np.array_equal(a.segments, b.segments)
    assert torch.equal(first.render_frames(a), again.render_frames(b))
    assert a.num_frames != c.num_frames or a.texts != c.texts


def test_a_frame_renders_the_same_alone_or_with_its_video(generator):
    video = generator.make_video("val", 1)
    whole = generator.render_frames(video)
    some = np.array([video.num_frames - 1, 0, int(video.segments[1, 0]) + 1])
    assert torch.equal(generator.render_frames(video, some), whole[some])


def test_heldout_pairs_never_occur_in_train_or_valid_and_every_test_video_has_one(generator):
    heldout = {step_class(a, o) for a, o in parse_heldout_steps(DEFAULT_HELDOUT_STEPS)}
    for split in ("train", "val"):
        for i in range(200):
            assert not heldout & set(generator.make_video(split, i).text_ids), (split, i)
    seen_in_test = set()
    for i in range(60):
        video = generator.make_video("test", i)
        assert heldout & set(video.text_ids)
        assert video.heldout == [t in heldout for t in video.text_ids]
        seen_in_test |= heldout & set(video.text_ids)
    assert seen_in_test == heldout


def test_splits_are_disjoint_by_video(generator):
    videos = {s: [generator.make_video(s, i) for i in range(30)] for s in ("train", "val", "test")}
    ids = [v.video_id for vs in videos.values() for v in vs]
    assert len(set(ids)) == len(ids)
    train_specs = {(tuple(v.texts), v.num_frames) for v in videos["train"]}
    assert not train_specs & {(tuple(v.texts), v.num_frames) for v in videos["val"]}


def test_segments_are_ordered_inside_the_video_and_frame_labels_match(generator):
    for i in range(50):
        video = generator.make_video("train", i)
        starts, ends = video.segments[:, 0], video.segments[:, 1]
        assert starts[0] >= 0 and ends[-1] < video.num_frames
        assert (starts <= ends).all() and (starts[1:] > ends[:-1]).all()
        labels = frame_labels(video.segments, video.num_frames)
        for k, (start, end) in enumerate(video.segments, start=1):
            assert (labels[start : end + 1] == k).all()
        assert (labels > 0).sum() == (ends - starts + 1).sum()


def test_videos_vary_in_step_count_and_length(generator):
    videos = [generator.make_video("train", i) for i in range(40)]
    assert len({len(v.texts) for v in videos}) >= 3
    assert len({v.num_frames for v in videos}) >= 10


def test_step_texts_use_synonyms_that_share_a_text_id(generator):
    texts_per_pair: dict[int, set[str]] = {}
    for i in range(200):
        video = generator.make_video("train", i)
        for text, text_id in zip(video.texts, video.text_ids, strict=True):
            texts_per_pair.setdefault(text_id, set()).add(text)
    assert max(len(texts) for texts in texts_per_pair.values()) >= 5
    cut_onion = texts_per_pair[step_class(ACTIONS.index("cut"), OBJECT_NAMES.index("onion"))]
    assert {t.split()[0] for t in cut_onion} >= {"cut", "slice", "chop"} - {"now", "then"}


def _object_fraction(frames: torch.Tensor) -> torch.Tensor:
    """Per frame: fraction of pixels far (> 0.2 in some channel) from the frame's median colour."""
    median = frames.flatten(2).median(dim=2).values[:, :, None, None]
    return ((frames - median).abs().amax(dim=1) > 0.2).float().mean(dim=(1, 2))


def test_step_frames_differ_from_background_frames(generator):
    for i in range(15):
        video = generator.make_video("train", i)
        labels = torch.from_numpy(frame_labels(video.segments, video.num_frames))
        fraction = _object_fraction(generator.render_frames(video))
        assert fraction[labels > 0].min() > 0.015 > fraction[labels == 0].max(), video.video_id


def _object_mask(clip: torch.Tensor) -> torch.Tensor:
    """(frames, H, W): pixels of a `step_clip` (flat 0.2 table) that belong to the object."""
    return (clip - 0.2).abs().amax(dim=1) > 0.15


def _centroid(mask: torch.Tensor) -> torch.Tensor:
    """(frames, 2) mean (x, y) pixel of the mask."""
    ys, xs = torch.meshgrid(
        *(torch.arange(n, dtype=torch.float32) for n in mask.shape[1:]), indexing="ij"
    )
    area = mask.sum(dim=(1, 2)).float()
    return torch.stack([(mask * xs).sum((1, 2)) / area, (mask * ys).sum((1, 2)) / area], dim=1)


def _extent(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """(frames,) width (dim=2) or height (dim=1) of the mask's bounding box, in pixels."""
    occupied = mask.any(dim=3 - dim).float()  # (frames, columns or rows)
    index = torch.arange(occupied.shape[1], dtype=torch.float32)
    first = torch.where(occupied > 0, index, float("inf")).amin(dim=1)
    last = torch.where(occupied > 0, index, -1.0).amax(dim=1)
    return last - first + 1


@pytest.fixture(scope="module")
def clips():
    generator = ProceduralVideoGenerator(frame_size=48, noise_std=0.01)
    return {a: generator.render_frames(generator.step_clip(a, "butter", 16)) for a in ACTIONS}


def test_cut_splits_the_object_apart(clips):
    mask = _object_mask(clips["cut"])
    assert _extent(mask, 2)[-1] - _extent(mask, 2)[0] >= 6
    assert not mask[-1, :, 23:25].any()  # a gap down the middle
    assert (_centroid(mask)[:, 0] - 23.5).abs().max() < 1


def test_stir_rotates_the_object_in_place(clips):
    mask = _object_mask(clips["stir"])
    assert (_centroid(mask) - _centroid(mask)[:1]).abs().max() < 1.5
    turned = (mask ^ mask[:1]).float().mean(dim=(1, 2))
    assert turned.max() > 0.03


def test_pour_moves_the_object_down(clips):
    y = _centroid(_object_mask(clips["pour"]))[:, 1]
    assert y[-1] - y[0] > 15 and (y.diff() > 0).all()


def test_heat_flickers_the_colour_of_a_still_object(clips):
    clip = clips["heat"]
    mask = _object_mask(clip)
    assert (_centroid(mask) - _centroid(mask)[:1]).abs().max() < 0.5
    colour = (clip * mask[:, None]).sum((2, 3)) / mask.sum((1, 2))[:, None]  # (frames, 3)
    assert (colour.amax(dim=0) - colour.amin(dim=0)).max() > 0.3
    red = colour[:, 0]
    assert (red.diff().sign().diff() != 0).sum() >= 3  # goes up and down: a flicker


def test_shake_moves_the_object_left_and_right(clips):
    centroid = _centroid(_object_mask(clips["shake"]))
    x, y = centroid[:, 0], centroid[:, 1]
    assert x.max() - x.min() > 8 and y.max() - y.min() < 1
    assert (x.diff().sign().diff() != 0).sum() >= 2


def test_mash_squashes_the_object(clips):
    mask = _object_mask(clips["mash"])
    height, width = _extent(mask, 1), _extent(mask, 2)
    assert height[-1] < 0.6 * height[0] and width[-1] > width[0]


def test_every_pair_of_actions_renders_differently(clips):
    for i, a in enumerate(ACTIONS):
        for b in ACTIONS[i + 1 :]:
            assert (clips[a][1:] - clips[b][1:]).abs().mean() > 0.01, (a, b)


def test_unknown_heldout_step_is_rejected():
    with pytest.raises(ValueError, match="fry rocks"):
        ProceduralVideoGenerator(heldout_steps=["fry rocks"])
