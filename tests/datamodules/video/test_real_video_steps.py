"""Steps as real videos have them: skipped, repeated, out of order, look-alikes in the background."""

import numpy as np
import pytest
import torch

from datamodules.video.annotations import frame_labels
from datamodules.video.datasets import FrameTextPairDataset, StepAlignmentDataset, resample
from datamodules.video.procedural import ProceduralVideoGenerator


def shown_order(video) -> list[int]:
    """Listed-step indices in the order the video first shows them."""
    shown = [k for k in range(len(video.texts)) if video.segments[k, 0] >= 0]
    return sorted(shown, key=lambda k: video.segments[k, 0])


def test_the_options_off_give_the_videos_of_before():
    plain, off = (
        ProceduralVideoGenerator(seed=5),
        ProceduralVideoGenerator(seed=5, reorder="shuffle"),
    )
    a, b = plain.make_video("train", 2), off.make_video("train", 2)
    assert a.clips is None and a.repeats is None
    assert np.array_equal(a.segments, b.segments) and a.num_frames == b.num_frames
    assert torch.equal(plain.render_frames(a), off.render_frames(b))


def test_perturbed_videos_keep_the_step_list_and_texts_of_the_plain_ones():
    plain = ProceduralVideoGenerator(seed=1)
    real = ProceduralVideoGenerator(seed=1, skip_prob=0.3, repeat_prob=0.3, reorder_prob=1.0)
    for index in range(5):
        a, b = plain.make_video("test", index), real.make_video("test", index)
        assert a.texts == b.texts and a.text_ids == b.text_ids and a.heldout == b.heldout


def test_reordered_videos_show_their_steps_out_of_the_listed_order():
    swap = ProceduralVideoGenerator(seed=0, min_steps=3, reorder_prob=1.0, reorder="swap")
    shuffle = ProceduralVideoGenerator(seed=0, min_steps=3, reorder_prob=1.0, reorder="shuffle")
    for index in range(6):
        swapped = shown_order(swap.make_video("val", index))
        assert swapped != sorted(swapped)
        # a swap exchanges exactly one pair of neighbours
        assert sum(x != y for x, y in zip(swapped, sorted(swapped))) == 2
        assert shown_order(shuffle.make_video("val", index)) != sorted(swapped)


def test_skipped_steps_have_no_segment_no_frames_and_no_pretraining_pair():
    generator = ProceduralVideoGenerator(seed=2, skip_prob=0.5)
    videos = [generator.make_video("train", i) for i in range(8)]
    skipped = [(v, k) for v in videos for k in range(len(v.texts)) if v.segments[k, 0] < 0]
    assert skipped and all(any(v.segments[:, 0] >= 0) for v in videos)
    for video, k in skipped:
        assert np.array_equal(video.segments[k], [-1, -1])
        assert k + 1 not in frame_labels(video.segments, video.num_frames, video.repeats)
    pairs = FrameTextPairDataset(videos, generator.render_frames, random_frame=False)
    assert len(pairs) == sum(len(v.texts) for v in videos) - len(skipped)
    assert all(videos[v].segments[k, 0] >= 0 for v, k in pairs.steps)


def test_a_repeated_step_is_labelled_on_both_occurrences_and_shows_the_same_action():
    generator = ProceduralVideoGenerator(seed=4, repeat_prob=1.0)
    video = generator.make_video("train", 0)
    labels = frame_labels(video.segments, video.num_frames, video.repeats)
    assert len(video.repeats) == len(video.texts)  # every step done twice
    frames = generator.render_frames(video)
    for k, start, end in video.repeats.tolist():
        first_start, first_end = video.segments[k]
        assert start > first_end and (labels[start : end + 1] == k + 1).all()
        # the object in the first frame of each occurrence: same pixels up to sensor noise
        assert (frames[start] - frames[first_start]).abs().mean() < 0.1


def test_lookalike_clips_are_background_but_on_screen_and_never_a_listed_or_heldout_pair():
    generator = ProceduralVideoGenerator(seed=6, lookalike_prob=1.0)
    for index in range(4):
        video = generator.make_video("train", index)
        n = len(video.texts)
        lookalikes = video.clips[video.clips[:, 0] >= n]
        assert len(lookalikes) == n + 1  # one in every background stretch
        labels = frame_labels(video.segments, video.num_frames, video.repeats)
        listed = set(zip(video.actions[:n].tolist(), video.objects[:n].tolist()))
        table = generator.render_frames(video, np.arange(video.clips[0, 1]))  # before any clip
        for row, start, end in lookalikes.tolist():
            pair = (int(video.actions[row]), int(video.objects[row]))
            assert pair not in listed and pair not in generator.heldout
            assert (labels[start : end + 1] == 0).all()
            drawn = generator.render_frames(video, [start])[0]
            assert (drawn - table[-1]).abs().max() > 0.3  # an object is drawn there


def test_resampling_keeps_skipped_steps_absent_and_moves_repeats():
    generator = ProceduralVideoGenerator(seed=2, skip_prob=0.4, repeat_prob=0.6)
    video = next(
        v
        for v in (generator.make_video("train", i) for i in range(20))
        if len(v.repeats) and (v.segments[:, 0] < 0).any()
    )
    _, segments, repeats = resample(video, 40)
    assert (segments[video.segments[:, 0] < 0] == -1).all()
    assert repeats.shape == video.repeats.shape and (repeats[:, 1:] < 40).all()
    item = StepAlignmentDataset([video], generator.render_frames, num_frames=40)[0]
    assert set(item["frame_labels"].tolist()) == {0} | {
        k + 1 for k in range(len(video.texts)) if video.segments[k, 0] >= 0
    }


def test_probabilities_outside_zero_one_are_refused():
    with pytest.raises(ValueError, match="skip_prob"):
        ProceduralVideoGenerator(skip_prob=1.5)
