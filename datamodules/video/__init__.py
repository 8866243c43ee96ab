"""Data of the video step-alignment task: procedural videos, YouCook2-style features, video files."""

from datamodules.video.datamodule import InstructionalVideoDataModule
from datamodules.video.procedural import ProceduralVideoGenerator
from datamodules.video.video_files import VideoFileDataset, list_videos

__all__ = [
    "InstructionalVideoDataModule",
    "ProceduralVideoGenerator",
    "VideoFileDataset",
    "list_videos",
]
