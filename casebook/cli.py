"""casebook's command line, a thin LightningCLI:

    casebook fit  --config configs/ppo_trader.yaml [--config configs/presets/debug.yaml] [--trainer.max_epochs=3]
    casebook test --config configs/ppo_trader.yaml --ckpt_path last
    casebook doctor --config configs/ppo_trader.yaml     # minutes of checks before a long run (doctor.py)

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
- ``casebook test`` writes ``<default_root_dir>/test_metrics.json``;
- ``casebook doctor`` (``casebook/doctor.py``) checks a recipe and exits 1 if a check fails;
- ``--trainer.precision bf16-mixed`` on a CPU without bf16 hardware runs in 32-true (one line says so);
- bad input and non-finite training stop with one line, not a stack trace;
- commands that are not a Trainer's (``EXTRA_COMMANDS``): ``casebook market out.csv --signal momentum``.
"""

from __future__ import annotations

import importlib
import json
import netrc
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from callbacks import ExactResume, LatestCheckpoint, NonFiniteError
from casebook.doctor import DoctorTrainer
from casebook.hardware import cpu_line, native_bf16
from datamodules.errors import DataError
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


def checkpoint_dir(default_root_dir: str | None) -> str:
    return str(Path(default_root_dir or DEFAULT_ROOT_DIR) / "checkpoints")


class CasebookCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        wandb_offline_unless_logged_in()
        super().__init__(
            LightningModule,
            LightningDataModule,
            trainer_class=DoctorTrainer,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
        )

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's four, plus ``doctor``: a method of ``DoctorTrainer``, so it parses the same
        configs as ``fit`` and its options come from the method's signature (``--checks.steps``)."""
        return {**LightningCLI.subcommands(), "doctor": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LatestCheckpoint, "latest")
        parser.add_lightning_class_args(ExactResume, "resume")
        parser.set_defaults(
            {
                "checkpoint.save_last": False,  # `latest` owns last.ckpt
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
        keep_bf16_off_emulating_cpus(config.trainer)
        loggers = config.trainer.logger
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init_args = getattr(logger, "init_args", None)
            if (
                init_args is not None
                and "save_dir" in init_args
                and init_args.save_dir in (None, "", ".")
            ):
                init_args.save_dir = root

    def resolve_best_checkpoint(self) -> None:
        """``--ckpt_path best`` in a new process: Lightning only knows the best checkpoint inside
        the process that trained, so read it from the ModelCheckpoint state saved in last.ckpt."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "best" or getattr(
            self.trainer.checkpoint_callback, "best_model_path", ""
        ):
            return
        last = Path(self.trainer.checkpoint_callback.dirpath) / "last.ckpt"
        if not last.exists():
            raise DataError(
                f"--ckpt_path best: no {last} to read the best checkpoint from; run fit first"
            )
        states = torch.load(last, map_location="cpu", weights_only=True).get("callbacks", {})
        best = next(
            (
                s.get("best_model_path")
                for k, s in states.items()
                if k.startswith("ModelCheckpoint") and s.get("monitor")  # not `latest`
            ),
            None,
        )
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

    before_validate = before_test = before_predict = resolve_best_checkpoint

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


def keep_bf16_off_emulating_cpus(trainer_config) -> None:
    """bf16 autocast on a CPU without bf16 hardware (AVX-512 BF16 or AMX) is emulated, many times
    slower than float32: train such a run in 32-true instead, and say so in one line. CUDA runs
    and CPUs with bf16 keep what the config asks for."""
    precision = str(trainer_config.precision)
    accelerator = str(trainer_config.accelerator)
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision.startswith("bf16") and on_cpu and not native_bf16():
        trainer_config.precision = "32-true"
        print(
            f"casebook: precision {precision} asked for, but this CPU, {cpu_line()}, has no bf16 "
            "hardware (avx512_bf16/amx_bf16) and would emulate it many times slower: using 32-true",
            file=sys.stderr,
        )


def stated_error(error: BaseException | None) -> DataError | NonFiniteError | None:
    """The error whose message is the whole story: `error` itself, or what a class raised that
    jsonargparse instantiated (a model reading ``--model.pretrained``), which it re-raises as the
    cause of a ValueError of its own."""
    while error is not None and not isinstance(error, (DataError, NonFiniteError)):
        error = error.__cause__
    return error


# Subcommands that are not a Trainer's: "<module>:<function>" taking the remaining arguments and
# returning an exit code (imported only when asked for).
EXTRA_COMMANDS = {
    "market": "datamodules.trading.synthetic:main",  # write a planted-edge market as CSV
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
