"""Seeded procedural instructional videos: the embedded default data of the step-alignment task.

A video shows a task: an ordered list of steps, each an (action, object) pair rendered as a short
clip of small RGB frames, separated by background frames (a static cluttered table and sensor
noise, no object). The object gives the shape and colour; the action gives the motion:

    cut    the object splits into two halves that move apart
    stir   the object rotates (its dark stripe makes the rotation visible)
    pour   the object moves down the frame, tilted
    heat   the object's colour flickers (towards a blue flame)
    shake  the object oscillates left and right
    mash   the object is squashed flat

Step texts come from templates with synonyms ("cut the onion", "slice the onion", "chop onion").
Some (action, object) combinations are held out of train and valid and appear only in test, for
a zero-shot check.

Steps as real videos have them (all off by default; HT-Step and CrossTask videos do all four):
`skip_prob` leaves listed steps out of the video, `repeat_prob` does a shown step again later,
`reorder_prob` plays the shown steps out of the listed order (`reorder`: two neighbours swapped,
or shuffled), and `lookalike_prob` puts an unnarrated clip in a background stretch: a listed
step's object with another action, or its action on another object, labelled background. The
step list, its texts and the steps' looks stay those of the video without these options (drawn
from their own random stream), so a perturbed test set is the same videos played differently.

Everything is a pure function of the seed: `make_video(split, index)` draws a
cheap spec, `render_frames(video, frames)` renders any subset of its frames, vectorised over
frames, and a frame renders to the same pixels whichever subset it is rendered in.
"""

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from datamodules.video.annotations import AnnotatedVideo

ACTIONS: tuple[str, ...] = ("cut", "stir", "pour", "heat", "shake", "mash")
ACTION_VERBS: dict[str, tuple[str, ...]] = {
    "cut": ("cut", "slice", "chop", "dice"),
    "stir": ("stir", "mix", "whisk"),
    "pour": ("pour", "tip", "tip out"),
    "heat": ("heat", "warm", "cook", "fry"),
    "shake": ("shake", "toss", "jiggle"),
    "mash": ("mash", "crush", "press", "squash"),
}

SHAPES: tuple[str, ...] = (
    "circle",
    "ring",
    "square",
    "bar",
    "ellipse",
    "tall_ellipse",
    "diamond",
    "triangle",
)
# name: (names in texts, shape, RGB in [0, 1]); shapes and colours are pairwise distinct
# enough that shape or colour alone tells most objects apart.
OBJECTS: dict[str, tuple[tuple[str, ...], str, tuple[float, float, float]]] = {
    "tomato": (("tomato", "tomatoes"), "circle", (0.90, 0.15, 0.10)),
    "onion": (("onion", "onions"), "ring", (0.80, 0.60, 0.90)),
    "butter": (("butter",), "square", (0.95, 0.90, 0.60)),
    "carrot": (("carrot", "carrots"), "bar", (1.00, 0.50, 0.00)),
    "potato": (("potato", "potatoes"), "ellipse", (0.60, 0.40, 0.20)),
    "egg": (("egg", "eggs"), "tall_ellipse", (0.97, 0.97, 0.92)),
    "lettuce": (("lettuce", "greens"), "diamond", (0.20, 0.80, 0.20)),
    "cheese": (("cheese",), "triangle", (0.95, 0.80, 0.10)),
}
OBJECT_NAMES: tuple[str, ...] = tuple(OBJECTS)

TEMPLATES: tuple[str, ...] = (
    "{verb} the {obj}",
    "{verb} {obj}",
    "now {verb} the {obj}",
    "then {verb} the {obj}",
    "{verb} the {obj} well",
)

# One held-out object per action, each a different object, so every action and most objects
# are still seen in training, just never in these pairs.
DEFAULT_HELDOUT_STEPS: tuple[str, ...] = (
    "cut egg",
    "stir carrot",
    "pour cheese",
    "heat lettuce",
    "shake onion",
    "mash tomato",
)

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

Reorder = Literal["swap", "shuffle"]  # two neighbouring steps trade places, or any order


def step_class(action: int, obj: int) -> int:
    """The id of an (action, object) pair; texts of the same pair (synonyms) share it."""
    return action * len(OBJECT_NAMES) + obj


def all_step_texts() -> list[str]:
    """Every text the generator can write: the corpus its tokenizer is trained on."""
    return [
        template.format(verb=verb, obj=name)
        for action in ACTIONS
        for verb in ACTION_VERBS[action]
        for names, _, _ in OBJECTS.values()
        for name in names
        for template in TEMPLATES
    ]


def parse_heldout_steps(steps: list[str] | tuple[str, ...]) -> set[tuple[int, int]]:
    """`["cut egg", ...]` -> {(action index, object index), ...}; unknown words raise."""
    pairs = set()
    for step in steps:
        words = step.split()
        if len(words) != 2 or words[0] not in ACTIONS or words[1] not in OBJECTS:
            raise ValueError(
                f"held-out step {step!r} is not '<action> <object>' with action in {ACTIONS}"
                f" and object in {OBJECT_NAMES}"
            )
        pairs.add((ACTIONS.index(words[0]), OBJECT_NAMES.index(words[1])))
    return pairs


@dataclass(frozen=True)
class ProceduralVideo(AnnotatedVideo):
    """An annotated video plus everything needed to render it (arrays are per step)."""

    noise_seed: int = 0
    actions: np.ndarray | None = None  # (steps,) int
    objects: np.ndarray | None = None  # (steps,) int
    centers: np.ndarray | None = None  # (steps, 2) x, y in [-1, 1], y down
    radii: np.ndarray | None = None  # (steps,)
    angles: np.ndarray | None = None  # (steps,) radians
    colours: np.ndarray | None = None  # (steps, 3)
    speeds: np.ndarray | None = None  # (steps,) motion speed factor
    background: np.ndarray | None = None  # (3,) table colour
    clutter: np.ndarray | None = None  # (blobs, 6): x, y, sigma, r, g, b amplitude
    # (clips, 3) int: row of the per-step arrays drawn, start, end of every clip on screen
    # (steps, repeats, look-alikes; rows past the listed steps are look-alikes); None: the steps
    clips: np.ndarray | None = None


class ProceduralVideoGenerator:
    """Draws video specs from a seed and renders their frames.

    Video `index` of `split` depends only on (seed, split, index), so splits are disjoint by
    construction and a spec can be redrawn anywhere (e.g. in a DataLoader worker).
    """

    def __init__(
        self,
        seed: int = 0,
        frame_size: int = 32,
        min_steps: int = 3,
        max_steps: int = 6,
        min_step_frames: int = 8,
        max_step_frames: int = 16,
        min_gap_frames: int = 2,
        max_gap_frames: int = 10,
        noise_std: float = 0.04,
        heldout_steps: list[str] | tuple[str, ...] = DEFAULT_HELDOUT_STEPS,
        skip_prob: float = 0.0,
        repeat_prob: float = 0.0,
        reorder_prob: float = 0.0,
        reorder: Reorder = "swap",
        lookalike_prob: float = 0.0,
    ) -> None:
        if not 1 <= min_steps <= max_steps:
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
        if not 2 <= min_step_frames <= max_step_frames:
            raise ValueError("need 2 <= min_step_frames <= max_step_frames")
        if not 0 <= min_gap_frames <= max_gap_frames:
            raise ValueError("need 0 <= min_gap_frames <= max_gap_frames")
        self.seed = seed
        self.frame_size = frame_size
        self.min_steps, self.max_steps = min_steps, max_steps
        self.min_step_frames, self.max_step_frames = min_step_frames, max_step_frames
        self.min_gap_frames, self.max_gap_frames = min_gap_frames, max_gap_frames
        self.noise_std = noise_std
        for name, p in (
            ("skip_prob", skip_prob),
            ("repeat_prob", repeat_prob),
            ("reorder_prob", reorder_prob),
            ("lookalike_prob", lookalike_prob),
        ):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if reorder not in ("swap", "shuffle"):
            raise ValueError(f"reorder must be swap or shuffle, got {reorder!r}")
        self.skip_prob, self.repeat_prob = skip_prob, repeat_prob
        self.reorder_prob, self.reorder, self.lookalike_prob = reorder_prob, reorder, lookalike_prob
        self.heldout = parse_heldout_steps(heldout_steps)
        every_pair = [(a, o) for a in range(len(ACTIONS)) for o in range(len(OBJECT_NAMES))]
        self.seen_pairs = [p for p in every_pair if p not in self.heldout]
        self.heldout_pairs = sorted(self.heldout)
        if len(self.seen_pairs) < max_steps:
            raise ValueError("too many held-out steps: fewer seen pairs than max_steps")

    def make_video(self, split: str, index: int) -> ProceduralVideo:
        """The spec of video `index` of `split` ("train", "val" or "test")."""
        seq = np.random.SeedSequence([self.seed, _SPLIT_CODES[split], index])
        rng = np.random.default_rng(seq)
        num_steps = int(rng.integers(self.min_steps, self.max_steps + 1))
        # A video never repeats a pair, so its steps are unambiguous to align.
        seen = [self.seen_pairs[i] for i in rng.permutation(len(self.seen_pairs))]
        if split == "test" and self.heldout_pairs:
            # Every test video has at least one held-out pair: the zero-shot check.
            first = self.heldout_pairs[int(rng.integers(len(self.heldout_pairs)))]
            rest = [p for p in seen + self.heldout_pairs if p != first]
            rest = [rest[i] for i in rng.permutation(len(rest))[: num_steps - 1]]
            pairs = [first, *rest]
            pairs = [pairs[i] for i in rng.permutation(num_steps)]
        else:
            pairs = seen[:num_steps]
        actions = np.array([a for a, _ in pairs])
        objects = np.array([o for _, o in pairs])

        lengths = rng.integers(self.min_step_frames, self.max_step_frames + 1, num_steps)
        gaps = rng.integers(self.min_gap_frames, self.max_gap_frames + 1, num_steps + 1)
        starts = gaps[:-1].cumsum() + np.concatenate([[0], lengths[:-1].cumsum()])
        segments = np.stack([starts, starts + lengths - 1], axis=1)
        num_frames = int(lengths.sum() + gaps.sum())

        texts = []
        for a, o in pairs:
            verb = ACTION_VERBS[ACTIONS[a]][int(rng.integers(len(ACTION_VERBS[ACTIONS[a]])))]
            names = OBJECTS[OBJECT_NAMES[o]][0]
            name = names[int(rng.integers(len(names)))]
            template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
            texts.append(template.format(verb=verb, obj=name))

        base_colours = np.array([OBJECTS[OBJECT_NAMES[o]][2] for o in objects])
        colours = np.clip(base_colours + rng.uniform(-0.06, 0.06, (num_steps, 3)), 0.0, 1.0)
        num_blobs = 5
        clutter = np.concatenate(
            [
                rng.uniform(-1.0, 1.0, (num_blobs, 2)),
                rng.uniform(0.15, 0.4, (num_blobs, 1)),
                rng.uniform(-0.08, 0.08, (num_blobs, 3)),
            ],
            axis=1,
        )
        video = ProceduralVideo(
            video_id=f"procedural-{split}-{index:05d}",
            num_frames=num_frames,
            segments=segments.astype(np.int64),
            texts=texts,
            text_ids=[step_class(a, o) for a, o in pairs],
            heldout=[p in self.heldout for p in pairs],
            noise_seed=int(seq.generate_state(1, np.uint32)[0]),
            actions=actions,
            objects=objects,
            centers=rng.uniform(-0.3, 0.3, (num_steps, 2)),
            radii=rng.uniform(0.32, 0.42, num_steps),
            angles=rng.uniform(-0.4, 0.4, num_steps),
            colours=colours,
            speeds=rng.uniform(0.8, 1.25, num_steps),
            background=rng.uniform(0.08, 0.35, 3),
            clutter=clutter,
        )
        if max(self.skip_prob, self.repeat_prob, self.reorder_prob, self.lookalike_prob) == 0:
            return video
        # A stream of its own: the listed steps, texts and looks above stay the same.
        played = np.random.default_rng(
            np.random.SeedSequence([self.seed, _SPLIT_CODES[split], index, 1])
        )
        return self._as_real_video(video, played)

    def _as_real_video(self, video: ProceduralVideo, rng: np.random.Generator) -> ProceduralVideo:
        """`video` re-laid out with skipped, repeated, reordered steps and look-alike clips."""
        n = len(video.texts)
        shown = [k for k in range(n) if rng.random() >= self.skip_prob]
        shown = shown or [int(rng.integers(n))]  # a video shows at least one step
        order = list(shown)
        if len(order) >= 2 and rng.random() < self.reorder_prob:
            if self.reorder == "swap":
                i = int(rng.integers(len(order) - 1))
                order[i], order[i + 1] = order[i + 1], order[i]
            else:
                permuted = [order[i] for i in rng.permutation(len(order))]
                order = permuted if permuted != order else order[1:] + order[:1]
        events = list(order)  # step index per clip; n + j for look-alike j
        for k in shown:
            if rng.random() < self.repeat_prob:  # again, somewhere after its first time
                first = events.index(k)
                events.insert(int(rng.integers(first + 1, len(events) + 1)), k)
        listed = set(zip(video.actions.tolist(), video.objects.tolist()))
        lookalikes: list[tuple[int, int]] = []
        with_lookalikes = []
        for position in range(len(events) + 1):
            if rng.random() < self.lookalike_prob:
                k = int(rng.integers(n))
                a, o = int(video.actions[k]), int(video.objects[k])
                # Never a held-out pair: training must not show those, even unnarrated.
                similar = [
                    p for p in self.seen_pairs if (p[0] == a) != (p[1] == o) and p not in listed
                ]
                if similar:
                    lookalikes.append(similar[int(rng.integers(len(similar)))])
                    with_lookalikes.append(n + len(lookalikes) - 1)
            if position < len(events):
                with_lookalikes.append(events[position])
        events = with_lookalikes
        lengths = rng.integers(self.min_step_frames, self.max_step_frames + 1, len(events))
        gaps = rng.integers(self.min_gap_frames, self.max_gap_frames + 1, len(events) + 1)
        starts = gaps[:-1].cumsum() + np.concatenate([[0], lengths[:-1].cumsum()])
        clips = np.stack([np.array(events), starts, starts + lengths - 1], axis=1).astype(np.int64)
        segments = np.full((n, 2), -1, dtype=np.int64)
        repeats = []
        for k, start, end in clips.tolist():
            if k >= n:
                continue
            if segments[k, 0] < 0:
                segments[k] = (start, end)
            else:
                repeats.append((k, start, end))
        m = len(lookalikes)
        actions = np.array([a for a, _ in lookalikes], dtype=np.int64)
        objects = np.array([o for _, o in lookalikes], dtype=np.int64)
        base = np.array([OBJECTS[OBJECT_NAMES[o]][2] for o in objects]).reshape(m, 3)
        return dataclasses.replace(
            video,
            num_frames=int(lengths.sum() + gaps.sum()),
            segments=segments,
            repeats=np.array(repeats, dtype=np.int64).reshape(-1, 3),
            clips=clips,
            actions=np.concatenate([video.actions, actions]),
            objects=np.concatenate([video.objects, objects]),
            centers=np.concatenate([video.centers, rng.uniform(-0.3, 0.3, (m, 2))]),
            radii=np.concatenate([video.radii, rng.uniform(0.32, 0.42, m)]),
            angles=np.concatenate([video.angles, rng.uniform(-0.4, 0.4, m)]),
            colours=np.concatenate(
                [video.colours, np.clip(base + rng.uniform(-0.06, 0.06, (m, 3)), 0.0, 1.0)]
            ),
            speeds=np.concatenate([video.speeds, rng.uniform(0.8, 1.25, m)]),
        )

    def step_clip(self, action: str, obj: str, num_frames: int = 12) -> ProceduralVideo:
        """A canonical one-step video (centred, no jitter, no gaps): for tests and figures."""
        a, o = ACTIONS.index(action), OBJECT_NAMES.index(obj)
        return ProceduralVideo(
            video_id=f"clip-{action}-{obj}",
            num_frames=num_frames,
            segments=np.array([[0, num_frames - 1]]),
            texts=[f"{action} the {obj}"],
            text_ids=[step_class(a, o)],
            heldout=[(a, o) in self.heldout],
            noise_seed=0,
            actions=np.array([a]),
            objects=np.array([o]),
            centers=np.zeros((1, 2)),
            radii=np.array([0.38]),
            angles=np.zeros(1),
            colours=np.array([OBJECTS[obj][2]]),
            speeds=np.ones(1),
            background=np.full(3, 0.2),
            clutter=np.zeros((0, 6)),
        )

    def render_frames(
        self, video: ProceduralVideo, frames: np.ndarray | torch.Tensor | list | None = None
    ) -> torch.Tensor:
        """Frames `frames` (default: all) of `video` as float32 (frames, 3, H, W) in [0, 1]."""
        # Rendered with numpy, not torch: numpy runs these small element-wise ops on one thread,
        # while torch's intra-op threads made rendering ~40x slower on a busy 2-core machine.
        if frames is None:
            frames = np.arange(video.num_frames)
        frames = np.asarray(frames, dtype=np.int64).reshape(-1)
        size = self.frame_size
        coords = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)
        y, x = np.meshgrid(coords, coords, indexing="ij")  # (H, W), y points down

        table = self._table(video, x, y)  # (3, H, W)
        images = np.empty((len(frames), 3, size, size), dtype=np.float32)
        for i, t in enumerate(frames.tolist()):
            # One generator per frame, so a frame has the same noise in any subset.
            noise = np.random.default_rng([video.noise_seed, t]).standard_normal(
                table.shape, dtype=np.float32
            )
            images[i] = table + self.noise_std * noise

        clips = video.clips
        if clips is None:
            clips = np.column_stack([np.arange(len(video.segments)), video.segments])
        clip = np.full(video.num_frames, -1)
        for c, (_, start, end) in enumerate(clips.tolist()):
            clip[start : end + 1] = c
        clip = clip[frames]
        has_object = clip >= 0
        if has_object.any():
            k, start, end = clips[clip[has_object]].T
            phase = ((frames[has_object] - start) / np.maximum(end - start, 1)).astype(np.float32)
            images[has_object] = self._draw_objects(video, k, phase, images[has_object], x, y)
        return torch.from_numpy(np.clip(images, 0.0, 1.0, out=images))

    def _table(self, video: ProceduralVideo, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The static background (3, H, W): a table colour with a few soft clutter blobs."""
        table = np.broadcast_to(video.background[:, None, None], (3, *x.shape)).astype(np.float32)
        for bx, by, sigma, *rgb in video.clutter:
            blob = np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * sigma**2))
            table += np.asarray(rgb, dtype=np.float32)[:, None, None] * blob
        return table

    def _draw_objects(
        self,
        video: ProceduralVideo,
        k: np.ndarray,  # (n,) step of each frame
        phase: np.ndarray,  # (n,) 0 -> 1 over the step's clip
        images: np.ndarray,  # (n, 3, H, W)
        x: np.ndarray,
        y: np.ndarray,
    ) -> np.ndarray:
        def per_frame(values: np.ndarray) -> np.ndarray:
            return values[k].astype(np.float32)

        action = video.actions[k]
        shape = np.array([SHAPES.index(OBJECTS[OBJECT_NAMES[o]][1]) for o in video.objects])[k]
        cx, cy = per_frame(video.centers[:, 0]), per_frame(video.centers[:, 1])
        radius, angle = per_frame(video.radii), per_frame(video.angles)
        colour, speed = per_frame(video.colours), per_frame(video.speeds)
        scale_x, scale_y, split = np.ones_like(phase), np.ones_like(phase), np.zeros_like(phase)

        def where(name: str, value: np.ndarray, default: np.ndarray) -> np.ndarray:
            return np.where(action == ACTIONS.index(name), value, default)

        split = where("cut", 0.7 * phase, split)
        angle = where("stir", angle + 2 * np.pi * speed * phase, angle)
        angle = where("pour", angle + 0.6, angle)
        cy = where("pour", -0.55 + 1.1 * phase, cy)
        flicker = 0.5 - 0.5 * np.cos(2 * np.pi * 3 * speed * phase)  # 0 at the clip start
        # Towards a blue flame colour: no object is blue, so every object's flicker shows.
        flame = np.array([0.2, 0.5, 1.0], dtype=np.float32)
        heated = colour + (flame - colour) * 0.8 * flicker[:, None]
        colour = np.where((action == ACTIONS.index("heat"))[:, None], heated, colour)
        cx = where("shake", cx + 0.3 * np.sin(2 * np.pi * 3 * speed * phase), cx)
        scale_y = where("mash", 1 - 0.55 * phase, scale_y)
        scale_x = where("mash", 1 + 0.35 * phase, scale_x)
        cy = where("mash", cy + radius * (1 - scale_y), cy)  # squashed onto the table

        # Object coordinates (n, H, W), in units of the radius, rotated with the object.
        def frame_wise(values: np.ndarray) -> np.ndarray:
            return values.astype(np.float32)[:, None, None]

        dx, dy = x - frame_wise(cx), y - frame_wise(cy)
        cos, sin = frame_wise(np.cos(angle)), frame_wise(np.sin(angle))
        u = (cos * dx + sin * dy) / frame_wise(radius * scale_x)
        v = (-sin * dx + cos * dy) / frame_wise(radius * scale_y)
        # A cut moves the left half left and the right half right.
        u_left, u_right = u + frame_wise(split), u - frame_wise(split)
        inside = np.zeros(u.shape, dtype=bool)
        for shape_id in np.unique(shape).tolist():  # only the shapes on screen
            rows = shape == shape_id
            ul, ur, vv = u_left[rows], u_right[rows], v[rows]
            inside[rows] = (_in_shape(shape_id, ul, vv) & (ul <= 0)) | (
                _in_shape(shape_id, ur, vv) & (ur > 0)
            )
        stripe = 1.0 - 0.45 * (np.abs(v) < 0.18)  # texture that shows rotation and cuts
        drawn = colour[:, :, None, None] * stripe[:, None]
        return np.where(inside[:, None], drawn, images)


def _in_shape(shape_id: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Which points (u, v), in radius units around the object's centre, lie in the shape."""
    name = SHAPES[shape_id]
    if name == "circle":
        return u**2 + v**2 <= 1.0
    if name == "ring":
        return (u**2 + v**2 <= 1.0) & (u**2 + v**2 >= 0.3)
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if name == "bar":
        return (np.abs(u) <= 1.25) & (np.abs(v) <= 0.42)
    if name == "ellipse":
        return (u / 1.15) ** 2 + (v / 0.7) ** 2 <= 1.0
    if name == "tall_ellipse":
        return (u / 0.7) ** 2 + (v / 1.05) ** 2 <= 1.0
    if name == "diamond":
        return np.abs(u) + np.abs(v) <= 1.15
    return (v <= 0.75) & (np.abs(u) <= 0.62 * (v + 1.0))  # triangle, apex up
