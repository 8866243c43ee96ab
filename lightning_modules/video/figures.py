"""The step aligner's timeline: for a few videos, true steps above predicted steps, one colour a step."""

from __future__ import annotations

import matplotlib
from matplotlib.figure import Figure


def timeline_figure(videos: list[dict], title: str = "") -> Figure:
    """`videos`: dicts with video_id, num_frames, true and pred ([start, end] inclusive frames per
    step, -1 when a step was not predicted) and texts. One panel per video, rows true / predicted."""
    figure = Figure(figsize=(10, 1.3 * len(videos) + 0.6))
    axes = figure.subplots(len(videos), 1, squeeze=False)[:, 0]
    colours = matplotlib.colormaps["tab10"]
    for ax, video in zip(axes, videos):
        for row, key in ((1, "true"), (0, "pred")):
            for k, (start, end) in enumerate(video[key]):
                if start < 0:
                    continue
                ax.broken_barh(
                    [(start, end - start + 1)], (row - 0.4, 0.8), color=colours(k % 10), alpha=0.85
                )
                if row == 1:
                    ax.text(
                        start, row, f" {k + 1}", va="center", ha="left", fontsize=7, color="black"
                    )
        ax.set_xlim(0, video["num_frames"])
        ax.set_ylim(-0.6, 1.6)
        ax.set_yticks([0, 1], ["predicted", "true"])
        steps = "; ".join(f"{k + 1} {text}" for k, text in enumerate(video["texts"]))
        ax.set_title(f"{video['video_id']}: {steps}", fontsize=8, loc="left")
    axes[-1].set_xlabel("frame")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
