"""Task-agnostic Lightning callbacks: gradient norms, clipping, train/valid skew, exact resumes,
figures and report tables, and a prediction writer (`casebook predict` -> one .npy per item).

Everything Lightning already ships (LearningRateMonitor, ModelCheckpoint, EarlyStopping,
EMAWeightAveraging, SpikeDetection, ThroughputMonitor, RichProgressBar) is used from Lightning.
callbacks/ imports neither datamodules nor lightning_modules.
"""

from callbacks.adaptive_clip import AdaptiveGradClip
from callbacks.distributed import gather_from_ranks
from callbacks.exact_resume import ExactResume
from callbacks.figures import log_figure
from callbacks.grad_norm_monitor import GradNormMonitor, NonFiniteError
from callbacks.latest_checkpoint import LatestCheckpoint
from callbacks.npy_writer import NpyPredictionWriter
from callbacks.tables import log_table
from callbacks.train_valid_skew import TrainValidSkew

__all__ = [
    "AdaptiveGradClip",
    "ExactResume",
    "GradNormMonitor",
    "LatestCheckpoint",
    "NonFiniteError",
    "NpyPredictionWriter",
    "TrainValidSkew",
    "gather_from_ranks",
    "log_figure",
    "log_table",
]
