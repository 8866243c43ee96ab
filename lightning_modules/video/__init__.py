"""The video step aligner: CLIP-style pre-training (ClipPretrainer), then step alignment
(StepAligner: attend_align, similarity, lstm and zero_shot heads)."""

from lightning_modules.video.clip_pretrainer import ClipPretrainer
from lightning_modules.video.encoders import ClipEncoders, EncoderConfig
from lightning_modules.video.step_aligner import StepAligner

__all__ = ["ClipEncoders", "ClipPretrainer", "EncoderConfig", "StepAligner"]
