"""casebook's command line, a thin LightningCLI:

    casebook fit  --config configs/ppo_trader.yaml [--config configs/presets/debug.yaml] [--trainer.max_epochs=3]
    casebook test --config configs/ppo_trader.yaml --ckpt_path last
    casebook doctor --config configs/ppo_trader.yaml     # minutes of checks before a long run (doctor/)

What it adds to LightningCLI, and nothing task-specific:
- two ModelCheckpoints in ``<default_root_dir>/checkpoints``: ``checkpoint`` keeps the best by its monitor,
  ``latest`` (``callbacks.LatestCheckpoint``) rewrites ``last.ckpt`` at every save point
  (``--latest.every_n_train_steps N`` for mid-epoch ones), so ``--ckpt_path last`` resumes from the
  latest state, not the best epoch;
- exact resumes: the global random state in checkpoints and ``last.ckpt`` written on SIGTERM
  (``callbacks.ExactResume``, the ``resume`` group);
- values the data decides (``observation_shape``, ``vocab_size``, ...) linked from the datamodule to the
  model at instantiation, for whichever of them the chosen classes have;
- W&B as the default logger, offline unless credentials exist, written under ``default_root_dir``;
  the whole resolved config in its run config, flat, one key per option as the command line and
  the sweeps name it (``model.lr``, ``trainer.max_epochs``);
- a missing prerequisite (a data file, ``--ckpt_path best``'s checkpoint, a teacher, encoders)
  stops the run in one line before the Trainer and its loggers exist (``check_prerequisites``);
- ``casebook test`` writes ``<default_root_dir>/test_metrics.json``;
- ``casebook doctor`` (``casebook/doctor/``) checks a recipe and exits 1 if a check fails;
- ``--trainer.precision bf16-mixed`` on a CPU without bf16 hardware runs in 32-true (one line says so);
- bad input and non-finite training stop with one line, not a stack trace;
- commands that are not a Trainer's (``EXTRA_COMMANDS``): ``casebook market out.csv --signal momentum``,
  ``casebook search FEATURES "cut the tomato"``.
"""

from __future__ import annotations

import importlib
import json
import logging
import netrc
import os
import signal
import sys
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import torch
import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from callbacks import ExactResume, LatestCheckpoint, NonFiniteError
from casebook.common.errors import DataError, first_line
from casebook.doctor import DoctorTrainer
from casebook.hardware import cpu_line, native_bf16
from datamodules.hparams import load_checkpoint

# Attributes a datamodule may expose and a model may accept; each present pair is linked.
DATA_TO_MODEL_LINKS = (
    "observation_shape",
    "num_actions",
    "action_mode",
    "vocab_size",
    "pad_token_id",
    "feature_dim",
    "frame_shape",
)
DEFAULT_ROOT_DIR = "runs/default"


def wandb_offline_unless_logged_in() -> None:
    """W&B never prompts and never needs the network: it runs offline unless the user chose a
    mode (`WANDB_MODE`) or has an API key where wandb looks first: `WANDB_API_KEY`, or the netrc
    entry `wandb login` writes (`$NETRC`, else `~/.netrc`) for the server (`WANDB_BASE_URL`'s
    host, default api.wandb.ai). A key kept only in wandb's settings files is not looked for."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").netloc
    path = Path(os.environ.get("NETRC") or "~/.netrc").expanduser()
    try:
        if netrc.netrc(str(path)).authenticators(host):
            return
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    os.environ["WANDB_MODE"] = "offline"


def best_checkpoint_path(last: dict) -> str | None:
    """The best checkpoint's path recorded in a loaded last.ckpt: the state of the ModelCheckpoint
    with a monitor (``checkpoint``; ``latest`` has none)."""
    states = last.get("callbacks", {})
    return next(
        (
            state.get("best_model_path")
            for key, state in states.items()
            if key.startswith("ModelCheckpoint") and state.get("monitor")
        ),
        None,
    )


def checkpoint_dir(default_root_dir: str | None) -> str:
    return str(Path(default_root_dir or DEFAULT_ROOT_DIR) / "checkpoints")


# Known noise (issue 15), each dropped by its exact text where it is made, nothing else: every
# Trainer's tips to install Lightning's cloud logger and model registry, and torch's deprecation
# of the LeafSpec class that Lightning's pytree helper still builds.
LIGHTNING_TIPS = ("💡 Tip: For seamless cloud logging", "💡 Tip: For seamless cloud uploads")


class DropLightningTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(LIGHTNING_TIPS)


def silence_known_noise() -> None:
    tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, DropLightningTips) for f in tips.filters):
        tips.addFilter(DropLightningTips())
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )


class HeldBack(logging.Filter):
    """Holds a logger's records back until `release()`; `close()` drops what is still held. The CLI
    holds Lightning's "Seed set to N" until the run's prerequisites pass, so that a run stopping on
    one prints one line."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.logger, self.records = logging.getLogger(name), []
        self.logger.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False

    def close(self) -> None:
        self.logger.removeFilter(self)
        self.records = []

    def release(self) -> None:
        records = self.records
        self.close()
        for record in records:
            self.logger.handle(record)


def loggers_of(trainer_config) -> list:
    """The ``logger`` entry of a trainer config (a dict or a Namespace), as a list."""
    loggers = trainer_config.get("logger")
    return loggers if isinstance(loggers, list) else [loggers]


def start_wandb_quietly(logger: WandbLogger) -> None:
    """Two warnings wandb prints at every start, avoided at their cause: Lightning passes
    ``anonymous=None``, a setting wandb warns has no effect; and wandb looks for a git repository
    from its run folder, and warns when that folder does not exist yet."""
    if logger._wandb_init.get("anonymous", False) is None:
        del logger._wandb_init["anonymous"]
    if logger.save_dir:
        Path(logger.save_dir).mkdir(parents=True, exist_ok=True)


def command_line_options(config: dict, prefix: str = "") -> dict[str, object]:
    """A resolved config, flat, one key per option as the command line and the sweeps name it:
    ``{"model": {"class_path": P, "init_args": {"lr": 0.1}}}`` -> ``{"model.class_path": P,
    "model.lr": 0.1}``. ``init_args`` is left out right under a top-level group (``model``,
    ``data``), as in ``--model.lr``; deeper ones stay (``model.policy.init_args.depth``)."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            if not prefix and "init_args" in value:
                value = {k: v for k, v in value.items() if k != "init_args"} | (
                    value["init_args"] or {}
                )
            flat.update(command_line_options(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class SaveConfigToLoggers(SaveConfigCallback):
    """``config.yaml`` as Lightning writes it, and the same resolved config in every logger's
    hyper-parameters (the W&B run's config), flat (``command_line_options``): once, on rank 0 (the
    only rank Lightning calls ``save_config`` on).

    Only ``fit`` writes ``config.yaml``; ``test``, ``validate`` and ``predict`` write
    ``config-<stage>.yaml`` beside it, so testing a run in its own folder keeps the record of how
    it was trained."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        stage = getattr(stage, "value", stage)  # Lightning passes its TrainerFn enum
        if stage != "fit":
            self.config_filename = f"config-{stage}.yaml"
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        resolved = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        options = command_line_options(resolved)
        for logger in trainer.loggers:
            params = options
            if isinstance(logger, WandbLogger):
                # A sweep trial's run starts holding the sweep's values, locked: wandb warns on any
                # update of a locked key, so send only what is new or differs (a difference is a
                # real warning: the trial did not run the value its sweep sent).
                known = logger.experiment.config
                params = {k: v for k, v in options.items() if k not in known or known[k] != v}
            logger.log_hyperparams(params)


class CasebookCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        wandb_offline_unless_logged_in()
        silence_known_noise()
        super().__init__(
            LightningModule,
            LightningDataModule,
            trainer_class=DoctorTrainer,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=SaveConfigToLoggers,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
        )

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's four, plus ``doctor``: a method of ``DoctorTrainer``, so it parses the same
        configs as ``fit`` and its options come from the method's signature (``--checks.steps``,
        ``--only``)."""
        return {**LightningCLI.subcommands(), "doctor": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LatestCheckpoint, "latest")
        parser.add_lightning_class_args(ExactResume, "resume")
        parser.set_defaults(
            {
                "checkpoint.save_last": False,  # `latest` owns last.ckpt
                # the loggers get the whole resolved config (SaveConfigToLoggers), not a second,
                # unprefixed copy of the model's and the data's arguments
                "trainer.enable_autolog_hparams": False,
                "trainer.default_root_dir": DEFAULT_ROOT_DIR,
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.WandbLogger",
                    "init_args": {"project": "casebook"},
                },
            }
        )
        for group in ("checkpoint", "latest"):
            parser.link_arguments(
                "trainer.default_root_dir", f"{group}.dirpath", compute_fn=checkpoint_dir
            )
        for name in DATA_TO_MODEL_LINKS:
            # jsonargparse skips a link whose source or target the chosen classes do not have.
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        """A W&B sweep trial gets a directory of its own; loggers write under default_root_dir."""
        config = (
            self.config.get(str(self.subcommand), self.config) if self.subcommand else self.config
        )
        root = config.trainer.default_root_dir or DEFAULT_ROOT_DIR
        sweep_id, run_id = os.environ.get("WANDB_SWEEP_ID"), os.environ.get("WANDB_RUN_ID")
        if sweep_id and run_id and self.subcommand in (None, "fit"):
            # Trials of one sweep share the command line, so without this they would share (and
            # overwrite) checkpoints and test_metrics.json.
            root = str(Path(root) / f"sweep-{sweep_id}" / run_id)
            config.trainer.default_root_dir = root
            config.checkpoint.dirpath = config.latest.dirpath = checkpoint_dir(root)
        self._precision_note = keep_bf16_off_emulating_cpus(config.trainer)  # said once it runs
        for logger in loggers_of(config.trainer):
            init_args = getattr(logger, "init_args", None)
            if (
                init_args is not None
                and "save_dir" in init_args
                and init_args.save_dir in (None, "", ".")
            ):
                init_args.save_dir = root

    def _set_seed(self) -> None:
        self._seed_line = HeldBack("lightning.fabric.utilities.seed")  # see instantiate_trainer
        super()._set_seed()

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        finally:
            self._seed_line.close()

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The model and the data are built, the Trainer (and with it any logger) is not: a run
        missing a prerequisite stops here with one line and leaves no run directory behind."""
        self.check_prerequisites()
        self._seed_line.release()
        if self._precision_note:
            print(self._precision_note, file=sys.stderr)
        for logger in loggers_of(self._get(self.config_init, "trainer", default={})):
            if isinstance(logger, WandbLogger):
                start_wandb_quietly(logger)
        return super().instantiate_trainer(**kwargs)

    def check_prerequisites(self) -> None:
        """What the run needs from another command or from the user: the checkpoint ``--ckpt_path
        best`` names, and whatever the datamodule and the model check in their optional
        ``check_prerequisites(stage)`` (data files, checkpoints to ensemble). A teacher or
        pre-trained encoders are read, and so checked, by their module's constructor."""
        if self.subcommand in ("validate", "test", "predict"):
            self.resolve_best_checkpoint()
        for component in (self.datamodule, self.model):
            check = getattr(component, "check_prerequisites", None)
            if callable(check):
                check(self.subcommand or "fit")

    def resolve_best_checkpoint(self) -> None:
        """``--ckpt_path best`` in a new process: Lightning only knows the best checkpoint inside
        the process that trained, so read it from the ModelCheckpoint state saved in last.ckpt."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "best":
            return
        last = Path(config["checkpoint"].dirpath) / "last.ckpt"
        if not last.exists():
            raise DataError(
                f"--ckpt_path best: no {last} to read the best checkpoint from; run fit first"
            )
        best = best_checkpoint_path(load_checkpoint(last, "--ckpt_path best"))
        if not best or not Path(best).exists():
            raise DataError(
                f"--ckpt_path best: {last} records no existing best checkpoint (is checkpoint.monitor set?)"
            )
        print(f"best checkpoint: {best}")
        config["ckpt_path"] = best

    def _parse_ckpt_path(self) -> None:
        """Lightning reads a ``--ckpt_path`` file's hyper-parameters into the config before anything
        runs (they take precedence over the command line). Check the file first, so that a missing,
        unreadable or other model's checkpoint gets one line naming it instead of a traceback or,
        worse, a silent switch to the checkpoint's model class. Read with ``weights_only=True``:
        tensors and plain containers only, no pickled code."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path in (None, "last", "best", "hpc") or str(path).startswith("registry"):
            return super()._parse_ckpt_path()
        checkpoint = load_checkpoint(path, "--ckpt_path")
        saved = str(checkpoint.get("hyper_parameters", {}).get("_class_path", "")).rsplit(".", 1)[
            -1
        ]
        if not saved:
            return  # not written by this CLI: the config alone says what the model is
        wanted = str(self.config[subcommand].model.class_path).rsplit(".", 1)[-1]
        if saved != wanted:
            raise DataError(
                f"--ckpt_path {path}: a checkpoint of {saved}, but this config's model is {wanted}"
            )
        super()._parse_ckpt_path()

    def after_test(self) -> None:
        """The results contract: a flat JSON object of every ``test/`` metric, rank 0, overwritten."""
        if not self.trainer.is_global_zero:
            return
        metrics = {
            key: float(value)
            for key, value in sorted(self.trainer.callback_metrics.items())
            if key.startswith("test/")
        }
        path = Path(self.trainer.default_root_dir) / "test_metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"test metrics written to {path}")

    def after_doctor(self) -> None:
        """``casebook doctor`` exits 1 when a check fails (the table is printed and saved)."""
        if self.trainer.doctor_report.failed:
            sys.exit(1)


def keep_bf16_off_emulating_cpus(trainer_config) -> str | None:
    """bf16 autocast on a CPU without bf16 hardware (AVX-512 BF16 or AMX) is emulated, many times
    slower than float32: train such a run in 32-true instead, and return the line that says so.
    CUDA runs and CPUs with bf16 keep what the config asks for (None)."""
    precision = str(trainer_config.precision)
    accelerator = str(trainer_config.accelerator)
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision.startswith("bf16") and on_cpu and not native_bf16():
        trainer_config.precision = "32-true"
        return (
            f"casebook: precision {precision} asked for, but this CPU, {cpu_line()}, has no bf16 "
            "hardware (avx512_bf16/amx_bf16) and would emulate it many times slower: using 32-true"
        )
    return None


def stated_error(error: BaseException | None) -> DataError | NonFiniteError | None:
    """The error whose message is the whole story: `error` itself, or what a class raised that
    jsonargparse instantiated (a model reading ``--model.pretrained``), which it re-raises as the
    cause of a ValueError of its own."""
    while error is not None and not isinstance(error, (DataError, NonFiniteError)):
        error = error.__cause__
    return error


PACKAGES = tuple(Path(__file__).resolve().parents[1] / name for name in
                 ("casebook", "callbacks", "datamodules", "lightning_modules"))  # fmt: skip


def option_error(error: BaseException | None) -> ValueError | None:
    """A ValueError that one of casebook's own classes raised in its constructor while jsonargparse
    built it from the command line (``source 'csv' needs --data.path``): a bad option, stated by
    its message. jsonargparse re-raises it inside "Does not validate against any of the Union
    subtypes" with the whole namespace; anything raised elsewhere is left as it is."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        frame = error.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        if isinstance(error, ValueError) and frame is not None:
            code = frame.tb_frame.f_code
            origin = Path(code.co_filename).resolve()
            if code.co_name in ("__init__", "__post_init__") and any(
                origin.is_relative_to(package) for package in PACKAGES
            ):
                return error
        error = error.__cause__ or error.__context__
    return None


# Subcommands that are not a Trainer's: "<module>:<function>" taking the remaining arguments and
# returning an exit code (imported only when asked for).
EXTRA_COMMANDS = {
    "market": "datamodules.trading.synthetic:main",  # write a planted-edge market as CSV
    "search": "lightning_modules.video.search:main",  # text query -> moments across videos
}


def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else args
    if argv and argv[0] in EXTRA_COMMANDS:
        module, _, function = EXTRA_COMMANDS[argv[0]].partition(":")
        sys.exit(getattr(importlib.import_module(module), function)(argv[1:]))
    try:
        CasebookCLI(args=args)
    except (DataError, NonFiniteError, ValueError) as raised:  # NonFiniteError: a RuntimeError
        error = stated_error(raised)
        if error is None and (option := option_error(raised)) is not None:
            print(f"casebook: error: {first_line(option)}", file=sys.stderr)
            sys.exit(2)
        if error is None:
            raise
        print(f"casebook: error: {error}", file=sys.stderr)
        sys.exit(2 if isinstance(error, DataError) else 3)
    except RuntimeError as error:
        if "Error(s) in loading state_dict" not in str(error):
            raise
        # same model class, other sizes or layers: Lightning's strict load lists every tensor;
        # its first two lines name the model and the first mismatch
        summary = " ".join(line.strip() for line in str(error).splitlines()[:2])
        print(
            f"casebook: error: the checkpoint does not fit this config's model ({summary})",
            file=sys.stderr,
        )
        sys.exit(2)
    except SIGTERMException:  # Lightning's exit on SIGTERM would otherwise be a silent status 0
        print("casebook: stopped by SIGTERM; --ckpt_path last resumes", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)


if __name__ == "__main__":
    main()
