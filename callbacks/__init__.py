"""Task-agnostic Lightning callbacks: gradient norms, clipping, train/valid skew, exact resumes, the
latest checkpoint, the validation curve against the clock (CSV), and a prediction writer
(`casebook predict` -> one .npy per item). Helpers that are not callbacks (report tables,
figures, gathering from DDP ranks) live in `casebook.common`.

Everything Lightning already ships (LearningRateMonitor, ModelCheckpoint, EarlyStopping,
EMAWeightAveraging, SpikeDetection, ThroughputMonitor, RichProgressBar) is used from Lightning.
callbacks/ imports neither datamodules nor lightning_modules.
"""

from callbacks.adaptive_clip import AdaptiveGradClip
from callbacks.exact_resume import ExactResume
from callbacks.grad_norm_monitor import GradNormMonitor, NonFiniteError
from callbacks.latest_checkpoint import LatestCheckpoint
from callbacks.npy_writer import NpyPredictionWriter
from callbacks.train_valid_skew import TrainValidSkew
from callbacks.validation_curve import ValidationCurve

__all__ = [
    "AdaptiveGradClip",
    "ExactResume",
    "GradNormMonitor",
    "LatestCheckpoint",
    "NonFiniteError",
    "NpyPredictionWriter",
    "TrainValidSkew",
    "ValidationCurve",
]
