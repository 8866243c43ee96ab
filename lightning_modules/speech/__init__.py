"""The speech student: a wav2vec2 CTC teacher recipe and its distiller.

casebook fit --config configs/speech_pretrain.yaml  # Wav2Vec2Pretrainer (self-supervised) -> runs/speech_pretrain/pretrained
casebook fit --config configs/speech_teacher.yaml   # Wav2Vec2CTCRecipe -> runs/speech_teacher/hf
casebook fit --config configs/speech_student.yaml   # Wav2Vec2Distiller -> runs/speech_student/student_hf
"""

from lightning_modules.speech.distiller import (
    Wav2Vec2Distiller,
    resolve_layer_map,
    student_from_teacher,
)
from lightning_modules.speech.pretrain import Wav2Vec2Pretrainer
from lightning_modules.speech.teacher import Wav2Vec2CTCRecipe

__all__ = [
    "Wav2Vec2CTCRecipe",
    "Wav2Vec2Distiller",
    "Wav2Vec2Pretrainer",
    "resolve_layer_map",
    "student_from_teacher",
]
