"""Task-agnostic Lightning callbacks: gradient norms, clipping, train/valid skew, figures.

Everything Lightning already ships (LearningRateMonitor, ModelCheckpoint, EarlyStopping,
EMAWeightAveraging, SpikeDetection, ThroughputMonitor, RichProgressBar) is used from Lightning.
callbacks/ imports neither datamodules nor lightning_modules.
"""

from callbacks.adaptive_clip import AdaptiveGradClip
from callbacks.figures import log_figure
from callbacks.grad_norm_monitor import GradNormMonitor, NonFiniteError
from callbacks.train_valid_skew import TrainValidSkew

__all__ = ["AdaptiveGradClip", "GradNormMonitor", "NonFiniteError", "TrainValidSkew", "log_figure"]
