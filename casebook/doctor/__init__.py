"""``casebook doctor``: a few minutes of checks on a recipe before a long run.

    casebook doctor --config configs/ppo_trader.yaml [--checks.steps 100] [--checks.lr_steps 100]
                    [--only overfit_one_batch,split_leakage]

The same config files (and presets and overrides) as ``casebook fit``; the doctor builds the same
model and data and runs short trainings of its own on one device: fresh copies of the initial
model with the configured optimizer, precision and clipping, in a scratch directory, with no
logger, checkpoints, validation, configured callbacks or ``on_fit_end`` exports. It prints::

    check | status | measured | expected | note

exiting 1 if any check fails (0 on pass, warn and skip). The table is also written as JSON to
``<default_root_dir>/doctor.json``. The checks (Karpathy's "A recipe for training neural
networks", 2019, turned into numbers), by their ``--only`` names:

- ``initial_loss``: the first step's loss against what a model that knows nothing scores;
- ``overfit_one_batch``: the loss of one fixed batch falls ``overfit_factor`` times in ``steps`` steps;
- ``learning_rate``: Lightning's ``Tuner.lr_find`` range test; fails when the configured rate is
  where the loss diverges, warns past the loss minimum or far below the steepest descent;
- ``gradient_norms`` and ``activations`` on the first real training step
  (``callbacks.GradNormMonitor``): non-finite, exploding or vanishing layers; dead ReLU and
  saturated Tanh/Sigmoid units, and each layer's output scale;
- ``nonfinite_data``, ``class_balance``, ``split_leakage``: NaN/inf in the first batches, class
  balance, split leakage;
- ``throughput`` (batches/s, samples/s, share of time spent waiting for data) and ``peak_memory``.

Tasks opt into checks with small optional methods, each a ``typing.Protocol`` in
``protocols.py`` (``expected_initial_loss``, ``initial_statistics``, ``fixed_batch`` +
``fixed_batch_loss`` on the LightningModule; ``split_keys``, ``class_counts``,
``inspection_batches`` on the LightningDataModule); a check a task does not support is reported
as ``skip`` with the reason, never passed silently.

The package, in import order: ``report`` (rows and the table), ``protocols``, ``harness`` (short
runs on fresh model copies; patches that restore themselves), ``probes`` (callbacks and memory
counters), ``examination`` (options and the runs checks share), ``checks`` (the registry),
``trainer`` (``DoctorTrainer.doctor``).
"""

from casebook.doctor.checks import CHECKS, REGISTRY, Check, examine
from casebook.doctor.examination import DoctorOptions, Examination
from casebook.doctor.report import CheckResult, DoctorReport
from casebook.doctor.trainer import DoctorTrainer

__all__ = [
    "CHECKS",
    "REGISTRY",
    "Check",
    "CheckResult",
    "DoctorOptions",
    "DoctorReport",
    "DoctorTrainer",
    "Examination",
    "examine",
]
