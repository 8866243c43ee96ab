"""Data of the video step-alignment task: procedural videos, YouCook2-style features, video files."""

from datamodules.video.datamodule import InstructionalVideoDataModule
from datamodules.video.decoding import VideoFileDataset, list_videos
from datamodules.video.procedural import ProceduralVideoGenerator

__all__ = [
    "InstructionalVideoDataModule",
    "ProceduralVideoGenerator",
    "VideoFileDataset",
    "list_videos",
]
