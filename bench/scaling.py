"""Per task: training throughput on 1 and 2 CPU processes (Lightning DDP), and what Lightning's
loop costs against a plain PyTorch loop doing the same work.

    .venv/bin/python -m bench.scaling                  # about 7.5 minutes on 2 quiet cores
    .venv/bin/python -m bench.scaling --quick          # 2-2.5 minutes: 1-3 steps, one round
    .venv/bin/python -m bench.scaling --tasks ppo_trader clip_pretrainer

Every task runs its `configs/<task>.yaml` unchanged, except for the number of training steps
(W warm-up + N timed, per task), no validation, no logger, no progress bar and no checkpoint
files. `speech_student` distills `runs/speech_teacher/hf` when it exists; otherwise it distills
an untrained teacher of `configs/speech_teacher.yaml`'s architecture, exported here. Likewise,
`step_aligner` reads the config's `runs/clip_pretrainer/encoders`, or untrained encoders of
`configs/clip_pretrainer.yaml`'s architecture. A step's time does not depend on the weights.
Every process uses one torch thread (`torch.set_num_threads(1)`, `OMP_NUM_THREADS=1`).

A *sample* is an env step for `ppo_trader` (`num_envs` x `rollout_steps` per iteration), an
utterance for the speech tasks (batches of up to 4 that vary in length), a frame-text pair for
`clip_pretrainer` and a video for `step_aligner`.

**(1) Lightning against a plain PyTorch loop**, in this process. Both use the same model (a copy
of one initial module), the same data (the datamodule's own `train_dataloader()`, seeded, so the
same batches in the same order; the batches are checked), the same optimizer and schedule, and
the same W + N steps:
- *plain PyTorch*, supervised tasks (speech_teacher, speech_student, clip_pretrainer,
  step_aligner). `model.train()`, then the module's own `configure_optimizers()` (AdamW and its
  per-step schedule; a stand-in answers the one Trainer attribute it reads,
  `estimated_stepping_batches` = W + N). For each batch of the loader: the module's loss
  (`model_step(batch, "train")` for the speech modules, `model_step(batch)` for ClipPretrainer,
  `loss(model(batch), batch)` for StepAligner), then `optimizer.zero_grad()`, `loss.backward()`,
  `optimizer.step()` and `scheduler.step()`. This is what their `training_step` computes,
  without the `self.log` calls (Lightning's machinery, so billed to it) and without
  ClipPretrainer's `train/batch_acc` diagnostic (one 128 x 128 argmax).
- *plain PyTorch*, ppo_trader (manual optimization). It uses a fresh `datamodule.make_env("train")`
  with the seed fit uses, and the module's own `configure_optimizers()` (AdamW). Each iteration
  does what `training_step` does: it sets the annealed learning rate (`lr_multiplier`), then
  calls `model.collect_rollout(env)`, `compute_gae` and `model.update(...)` (the module's PPO
  epochs, 4 x 4 minibatches). Inside `update`, `manual_backward` is replaced by
  `loss.backward()`, and the optimizer is wrapped so that `step()` first clips the global
  gradient norm to `max_grad_norm`, as `on_before_optimizer_step` does through Lightning.
  It also computes the explained variance, but not the `log_dict`.
- *Lightning*: a copy of the same initial module is fitted on the same datamodule by
  `lightning.Trainer(accelerator="cpu", devices=1, max_steps=W + N, logger=False,
  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
  limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=<config's>,
  callbacks=[StepTimer()])`. ppo_trader gets `max_epochs=1` instead, with W + N iterations per
  epoch.
- *Lightning + callbacks*: the same, with the config's `trainer.callbacks` (GradNormMonitor,
  TrainValidSkew, LearningRateMonitor) and a CSVLogger (the csv preset's; LearningRateMonitor
  needs a logger). GradNormMonitor's periodic statistics count optimizer steps: per-layer norms
  every 20 or 50, activations every 100 or 1000. For the supervised tasks these fall on step 0,
  which is warm-up, so their row shows the per-step hooks only. ppo_trader takes 16 optimizer
  steps per iteration, so its timed iterations include per-layer norms and, from iteration 7,
  an activation sample.
A step is timed from the end of one step to the end of the next, data loading included: after
`scheduler.step()` in the plain loop, at `on_train_batch_end` under Lightning (`StepTimer`).
The variants take turns, k rounds, starting with a different one each round. Step i trains on
the same batch in every round and variant, so each variant's cost is the mean over the N timed
steps of each step's fastest round, in wall time and in process CPU time (CPU time moves less
when other jobs load the machine). Overhead = Lightning / plain - 1.

**(2) Scaling.** Throughput = samples of the N timed steps / their wall time, without
interpreter start-up, setup or tear-down.
- 1 process: the *Lightning* runs of (1), the median over the k rounds.
- 2 processes: `casebook fit --config configs/<task>.yaml --config configs/presets/ddp_cpu.yaml`
  (DDP, gloo), with the same settings as the Lightning runs (task_arguments: W + N steps, no
  validation, logger, progress bar or checkpoint files) and `bench.scaling.StepTimer` as its
  only callback (`--trainer.callbacks=[] --trainer.callbacks+=bench.scaling.StepTimer`). One
  pair of processes (`python -m bench.scaling --run-fits ...`) runs every task's fit in turn,
  so the interpreters start once. The samples are summed over both ranks, and the time is the
  slower rank's. With R rounds, the median is kept.
Each process keeps the config's batch (weak scaling), so two processes train on twice the
samples per step. Scaling efficiency = throughput(2) / (2 x throughput(1)), where 1 is perfect.
*CPU busy* is a process's CPU seconds per wall second over the timed steps (gloo's threads
included). Below 1, the process waited, for a core (other jobs, the other rank) or for the other
rank's gradients.

CPU processes on 2 shared cores: scaling efficiency on CPU says nothing about GPUs, where each
process has its own device and the all-reduce runs over NVLink or InfiniBand.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from itertools import islice
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from bench.common import load_average, machine, quiet_trainer, write_results
from casebook.common.tables import markdown_table

REPO = Path(__file__).resolve().parents[1]
TASKS = ("ppo_trader", "speech_teacher", "speech_student", "clip_pretrainer", "step_aligner")
SAMPLE = {
    "ppo_trader": "env steps",
    "speech_teacher": "utterances",
    "speech_student": "utterances",
    "clip_pretrainer": "frame-text pairs",
    "step_aligner": "videos",
}
# (warm-up steps W, timed steps N) per task. A ppo_trader iteration or a step_aligner batch took
# ~2.5 s on 2 busy cores, a speech step ~0.25 s and a clip_pretrainer step ~0.5 s (twice to three
# times that per rank under DDP there): the default run took 7.2-7.7 minutes, --quick 2-2.5.
STEPS = {
    "ppo_trader": (1, 4),
    "speech_teacher": (2, 12),
    "speech_student": (2, 12),
    "clip_pretrainer": (2, 6),  # under DDP an epoch is 9 steps per rank: no epoch end inside
    "step_aligner": (1, 4),
}
QUICK_STEPS = {
    "ppo_trader": (1, 1),
    "speech_teacher": (1, 3),
    "speech_student": (1, 3),
    "clip_pretrainer": (1, 2),
    "step_aligner": (1, 1),
}
VARIANTS = ("plain PyTorch", "Lightning", "Lightning + callbacks")
# Trainer settings the plain loop does not mirror: a config that sets one is refused.
UNMIRRORED = {"gradient_clip_val": None, "accumulate_grad_batches": 1, "precision": None}


def samples_in(batch, trainer, pl_module) -> int:
    """Samples of one training step on one process (see the module docstring)."""
    if isinstance(batch, dict):
        for key in ("ids", "text_ids", "video_ids"):  # utterances, frame-text pairs, videos
            if key in batch:
                return len(batch[key])
    # The trading task's batch only paces the loop: the step collects a rollout from every env.
    return trainer.datamodule.train_env.num_envs * pl_module.hparams.rollout_steps


def batch_names(batch) -> str:
    """Which samples a batch holds (utterance or video ids; "" for the trading task's pacing
    item), to check that the loops compared trained on the same batches."""
    if isinstance(batch, dict):
        for key in ("ids", "video_ids"):
            if key in batch:
                return ",".join(map(str, batch[key]))
    return ""


class StepTimer(L.Callback):
    """Wall and process CPU time at the end of every training step, and its samples.

        casebook fit ... --trainer.callbacks+=bench.scaling.StepTimer

    When fitting ends, every rank writes `<default_root_dir>/step_timer/rank<k>.json`.
    """

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.samples: list[int] = []
        self.batches: list[str] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.samples.append(samples_in(batch, trainer, pl_module))
        self.batches.append(batch_names(batch))

    @property
    def record(self) -> dict:
        return {
            "wall": self.wall,
            "cpu": self.cpu,
            "samples": self.samples,
            "batches": self.batches,
        }

    def on_fit_end(self, trainer, pl_module) -> None:
        path = Path(trainer.default_root_dir) / "step_timer" / f"rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.record | {"world_size": trainer.world_size}))


def step_ms(clock: list[float], warm_up: int) -> list[float]:
    """Milliseconds of each timed step, from a clock read at the end of every step."""
    return [round(1e3 * (b - a), 2) for a, b in zip(clock[warm_up - 1 :], clock[warm_up:])]


def fastest_steps(runs: list[dict], clock: str = "step_ms") -> float:
    """Seconds per step: each timed step's fastest time over the rounds (a step trains on the same
    batch in every round and variant), averaged. A step slowed by other jobs in one round counts
    with its time from another."""
    per_step = [min(times) for times in zip(*(r[clock] for r in runs))]
    return statistics.mean(per_step) / 1e3


def timed_window(record: dict, warm_up: int) -> dict:
    """Mean seconds per step (wall, CPU) and samples over the steps after warm-up; each timed
    step's wall milliseconds and the batches of every step, for the results file."""
    wall, steps = record["wall"], len(record["wall"]) - warm_up
    if steps < 1 or warm_up < 1:
        raise RuntimeError(f"{len(wall)} steps recorded, {warm_up} of them warm-up")
    return {
        "steps": steps,
        "wall": (wall[-1] - wall[warm_up - 1]) / steps,
        "cpu": (record["cpu"][-1] - record["cpu"][warm_up - 1]) / steps,
        "samples": sum(record["samples"][warm_up:]),
        "step_ms": step_ms(wall, warm_up),
        "step_cpu_ms": step_ms(record["cpu"], warm_up),
        "batches": record["batches"],
    }


def task_arguments(task: str, steps: int, inputs: dict[str, Path]) -> list[str]:
    """`casebook fit` arguments: the task's config, `steps` training steps, no validation, no
    logger, no progress bar or model summary, no checkpoint files."""
    arguments = ["--config", str(REPO / "configs" / f"{task}.yaml")]
    if task == "ppo_trader":  # one step is one iteration (16 optimizer steps): count epochs
        arguments += [f"--data.iterations_per_epoch={steps}", "--trainer.max_epochs=1"]
    else:
        arguments += [f"--trainer.max_steps={steps}"]
    if task == "speech_student":
        arguments += [f"--model.teacher={inputs['teacher']}"]
    if task == "step_aligner":
        arguments += [f"--model.pretrained={inputs['encoders']}"]
    return arguments + [
        "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--checkpoint.save_top_k=0",
        "--latest.every_n_epochs=0",
    ]


def timed_fit_arguments(
    task: str, steps: int, inputs: dict, root: Path, preset: list[str] | None = None
) -> list[str]:
    """`casebook fit` (with `preset`'s arguments) and StepTimer as the only callback, under `root`."""
    return [
        "fit",
        *task_arguments(task, steps, inputs),
        *(preset or []),
        "--trainer.callbacks=[]",
        "--trainer.callbacks+=bench.scaling.StepTimer",
        f"--trainer.default_root_dir={root}",
    ]


def run_fits(commands: list[list[str]]) -> None:
    """`--run-fits`: each `casebook` command in turn, in this interpreter (and, under DDP, in the
    rank Lightning starts by re-running this command line)."""
    from casebook.cli import main as casebook

    torch.set_num_threads(1)
    quiet()
    for index, arguments in enumerate(commands):
        casebook(arguments)
        sys.stdout.write(f"finished: {index}\n")  # one write: both ranks share this stdout
        sys.stdout.flush()


def read_timers(root: Path, world_size: int) -> list[dict]:
    return [
        json.loads((root / "step_timer" / f"rank{k}.json").read_text()) for k in range(world_size)
    ]


def throughput(windows: list[dict]) -> float:
    """Samples per second of all ranks together, over the slowest rank's timed window."""
    seconds = max(w["wall"] * w["steps"] for w in windows)
    return sum(w["samples"] for w in windows) / seconds


def two_process_fits(
    tasks: list[str], steps: dict, inputs: dict, root: Path
) -> dict[str, list[dict] | None]:
    """Every task's DDP fit in one pair of processes: per task, each rank's timed window (None
    if the fit failed)."""
    ddp = ["--config", str(REPO / "configs" / "presets" / "ddp_cpu.yaml")]
    commands = [
        timed_fit_arguments(task, sum(steps[task]), inputs, root / task, ddp) for task in tasks
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "stdout.txt", "w") as out, open(root / "stderr.txt", "w") as err:
        subprocess.run(
            [sys.executable, "-m", "bench.scaling", "--run-fits", json.dumps(commands)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=err,
            timeout=1800,
        )
    results: dict[str, list[dict] | None] = {}
    for task in tasks:
        try:
            results[task] = [timed_window(r, steps[task][0]) for r in read_timers(root / task, 2)]
        except (OSError, RuntimeError, ValueError):
            results[task] = None
    if None in results.values():
        tail = (root / "stderr.txt").read_text()[-3000:]
        print(f"a DDP fit failed; the end of its stderr:\n{tail}", file=sys.stderr)
    return results


# ---------------------------------------------------------------- Lightning against plain PyTorch
def build(task: str, steps: int, inputs: dict, root: Path):
    """The task's module, datamodule, the config's callbacks and log_every_n_steps."""
    from casebook.cli import CasebookCLI

    cli = CasebookCLI(
        args=[*task_arguments(task, steps, inputs), f"--trainer.default_root_dir={root}"],
        run=False,
    )
    trainer_config = cli.config.trainer
    for key, default in UNMIRRORED.items():
        if trainer_config.get(key) not in (default, "32-true", "32"):
            raise SystemExit(f"{task}: trainer.{key} is set; the plain loop does not mirror it")
    names = {c.class_path.rsplit(".", 1)[-1] for c in trainer_config.callbacks or []}
    callbacks = [c for c in cli.trainer.callbacks if type(c).__name__ in names]
    cli.datamodule.prepare_data()
    cli.datamodule.setup("fit")
    return cli.model, cli.datamodule, callbacks, trainer_config.log_every_n_steps


def optimizer_and_scheduler(model: L.LightningModule, total_steps: int):
    """The module's own `configure_optimizers()`, with a stand-in for the one Trainer attribute
    these modules read there."""
    model._trainer = SimpleNamespace(estimated_stepping_batches=total_steps)
    try:
        configured = model.configure_optimizers()
    finally:
        model._trainer = None
    if isinstance(configured, dict):
        return configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    return configured, None


SUPERVISED_LOSS = {
    "speech_teacher": lambda model, batch: model.model_step(batch, "train")[0],
    "speech_student": lambda model, batch: model.model_step(batch, "train")["loss"],
    "clip_pretrainer": lambda model, batch: model.model_step(batch)[0],
    "step_aligner": lambda model, batch: model.loss(model(batch), batch),
}


def plain_supervised(task: str, model, datamodule, steps: int) -> dict:
    loss_of = SUPERVISED_LOSS[task]
    optimizer, scheduler = optimizer_and_scheduler(model, steps)
    model.train()
    record = {"wall": [], "cpu": [], "samples": [], "batches": []}
    for batch in islice(datamodule.train_dataloader(), steps):
        loss = loss_of(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        record["wall"].append(time.perf_counter())
        record["cpu"].append(time.process_time())
        record["samples"].append(samples_in(batch, None, model))
        record["batches"].append(batch_names(batch))
    return record


class ClippedOptimizer:
    """An optimizer whose `step()` first clips the global gradient norm, as PPOTrader's
    `on_before_optimizer_step` does under Lightning."""

    def __init__(self, optimizer: torch.optim.Optimizer, max_norm: float) -> None:
        self.optimizer, self.max_norm = optimizer, max_norm
        self.parameters = [p for group in optimizer.param_groups for p in group["params"]]

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self) -> None:
        if self.max_norm:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.max_norm)
        self.optimizer.step()


def plain_ppo(model, datamodule, steps: int) -> dict:
    from lightning_modules.trading.ppo_trader import compute_gae, explained_variance

    from lightning_modules.common import lr_multiplier

    hp = model.hparams
    if hp.target_kl is not None:
        raise SystemExit("ppo_trader: target_kl reduces over ranks through the Trainer")
    env = datamodule.make_env("train", seed=datamodule.seed)  # what setup("fit") makes on rank 0
    optimizer = model.configure_optimizers()
    clipped = ClippedOptimizer(optimizer, hp.max_grad_norm)
    model.manual_backward = lambda loss: loss.backward()  # shadows the Lightning method
    model.train()
    record = {"wall": [], "cpu": [], "samples": [], "batches": []}
    for iteration in range(steps):
        if hp.anneal_lr:
            factor = lr_multiplier(hp.lr_schedule, iteration, steps, hp.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = hp.lr * factor
        rollout, next_value = model.collect_rollout(env)
        advantages, returns = compute_gae(
            rollout.reward, rollout.value, rollout.done, next_value, hp.gamma, hp.gae_lambda
        )
        model.update(clipped, rollout, advantages, returns)
        explained_variance(rollout.value.flatten(), returns.flatten())
        record["wall"].append(time.perf_counter())
        record["cpu"].append(time.process_time())
        record["samples"].append(env.num_envs * hp.rollout_steps)
        record["batches"].append("")
    return record


def lightning_fit(
    task: str, model, datamodule, steps: int, callbacks: list, log_every: int, root: Path
) -> dict:
    timer = StepTimer()
    if task == "ppo_trader":
        datamodule.train_env = None  # setup("fit") makes a fresh one, as the plain loop does
        length = {"max_epochs": 1}
    else:
        length = {"max_steps": steps}
    trainer = quiet_trainer(
        logger=CSVLogger(root, name="csv") if callbacks else False,
        limit_val_batches=0,
        log_every_n_steps=log_every,
        callbacks=[timer, *callbacks],
        default_root_dir=root,
        **length,
    )
    with contextlib.redirect_stdout(io.StringIO()):  # "exported ... to": not this table's
        trainer.fit(model, datamodule=datamodule)
    return timer.record


def compare_loops(
    task: str, steps: tuple[int, int], rounds: int, inputs: dict, root: Path
) -> dict[str, list[dict]]:
    """Every variant `rounds` times, taking turns; variant -> each round's timed window."""
    warm_up, timed = steps
    total = warm_up + timed
    pristine, datamodule, callbacks, log_every = build(task, total, inputs, root / "build")
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for round_ in range(rounds):
        order = VARIANTS[round_ % 3 :] + VARIANTS[: round_ % 3]
        for variant in order:
            model = copy.deepcopy(pristine)  # the same initial weights, never attached to a Trainer
            torch.manual_seed(0)
            gc.collect()
            if variant == "plain PyTorch" and task == "ppo_trader":
                record = plain_ppo(model, datamodule, total)
            elif variant == "plain PyTorch":
                record = plain_supervised(task, model, datamodule, total)
            else:
                extra = copy.deepcopy(callbacks) if variant == "Lightning + callbacks" else []
                folder = root / f"{variant.replace(' ', '')}-{round_}"
                record = lightning_fit(task, model, datamodule, total, extra, log_every, folder)
            runs[variant].append(timed_window(record, warm_up))
    if len({tuple(r["batches"]) for rs in runs.values() for r in rs}) > 1:
        print(f"{task}: the runs compared did not train on the same batches", file=sys.stderr)
    return runs


# ---------------------------------------------------------------- inputs, table, main
def prepare_inputs(tasks: list[str], root: Path) -> dict[str, Path]:
    """The teacher the student distills and the encoders the aligner reads (see the docstring)."""
    from casebook.cli import CasebookCLI

    inputs = {}

    def untrained(task: str):
        arguments = ["--config", str(REPO / "configs" / f"{task}.yaml"), "--trainer.logger=false"]
        return CasebookCLI(args=arguments, run=False).model

    if "speech_student" in tasks:
        inputs["teacher"] = REPO / "runs" / "speech_teacher" / "hf"
        if not inputs["teacher"].is_dir():
            torch.manual_seed(0)
            inputs["teacher"] = untrained("speech_teacher").export(root / "teacher_hf")
    if "step_aligner" in tasks:
        inputs["encoders"] = REPO / "runs" / "clip_pretrainer" / "encoders"
        if not inputs["encoders"].is_dir():
            torch.manual_seed(0)
            inputs["encoders"] = root / "encoders"
            untrained("clip_pretrainer").encoders.save(inputs["encoders"])
    return inputs


def quiet() -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")


def row(task: str, steps: tuple[int, int], double: list, loops: dict, loads: list) -> dict:
    fastest = {
        v: (fastest_steps(runs), fastest_steps(runs, "step_cpu_ms")) for v, runs in loops.items()
    }
    (plain, plain_cpu), (bare, bare_cpu), (full, _) = (fastest[v] for v in VARIANTS)
    one = statistics.median(throughput([r]) for r in loops["Lightning"])
    measured = [ranks for ranks in double if ranks is not None]
    two = statistics.median(map(throughput, measured)) if measured else float("nan")
    # CPU seconds per wall second: below 1 when a process waits (for a core, or for the other rank)
    busy_one = statistics.median(r["cpu"] / r["wall"] for r in loops["Lightning"])
    busy_two = (
        statistics.median(w["cpu"] / w["wall"] for ranks in measured for w in ranks)
        if measured
        else float("nan")
    )
    per_step = statistics.mean(r["samples"] / r["steps"] for r in loops["plain PyTorch"])
    return {
        "task": task,
        "sample": SAMPLE[task],
        "samples/step/process": per_step,
        "steps (W+N)": f"{steps[0]}+{steps[1]}",
        "1 process (samples/s)": one,
        "2 processes (samples/s)": two,
        "scaling efficiency": two / (2 * one),
        "CPU busy, 1 process": busy_one,
        "CPU busy per rank, 2 processes": busy_two,
        "plain PyTorch (ms/step)": 1e3 * plain,
        "Lightning (ms/step)": 1e3 * bare,
        "overhead": f"{100 * (bare / plain - 1):+.1f}%",
        "overhead (CPU time)": f"{100 * (bare_cpu / plain_cpu - 1):+.1f}%",
        "Lightning + callbacks (ms/step)": 1e3 * full,
        "overhead + callbacks": f"{100 * (full / plain - 1):+.1f}%",
        "load (1 min)": f"{min(loads):.1f}-{max(loads):.1f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, one round (~2 min)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument(
        "--rounds", type=int, help="turns of each loop variant (default 3, quick 1)"
    )
    parser.add_argument(
        "--ddp-rounds", type=int, default=1, help="2-process fits per task (median kept)"
    )
    parser.add_argument("--run-fits", help=argparse.SUPPRESS)  # the DDP pair's command list
    args = parser.parse_args()
    if args.run_fits:
        run_fits(json.loads(args.run_fits))
        return
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    quiet()
    steps = {t: (QUICK_STEPS if args.quick else STEPS)[t] for t in args.tasks}
    rounds = args.rounds or (1 if args.quick else 3)
    info = machine()
    print(f"# scaling  {info}\n", flush=True)
    started = time.perf_counter()
    loads = {t: [load_average()[0]] for t in args.tasks}
    loops, double = {}, {t: [] for t in args.tasks}
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as folder:
        root = Path(folder)
        inputs = prepare_inputs(args.tasks, root)
        for task in args.tasks:
            loops[task] = compare_loops(task, steps[task], rounds, inputs, root / "loops" / task)
            loads[task].append(load_average()[0])
            print(f"{task}: loops compared ({time.perf_counter() - started:.0f} s)", flush=True)
        for round_ in range(args.ddp_rounds):
            ddp = two_process_fits(args.tasks, steps, inputs, root / f"ddp-{round_}")
            for task in args.tasks:
                double[task].append(ddp[task])
                loads[task].append(load_average()[0])
            print(f"2-process fits ({time.perf_counter() - started:.0f} s)", flush=True)
    rows = [row(t, steps[t], double[t], loops[t], loads[t]) for t in args.tasks]
    raw = {
        t: {"loops": loops[t], "2 processes (per round, per rank)": double[t]} for t in args.tasks
    }
    info["load_average_end"] = load_average()
    info["minutes"] = round((time.perf_counter() - started) / 60, 1)
    print(
        f"\n{info['date']}; load average {info['load_average']} at start, "
        f"{info['load_average_end']} at end; {info['cpu_count']} CPUs, 1 torch thread per "
        f"process; {rounds} round(s) of the loop variants (each step's fastest round kept; "
        f"1 process: median of the Lightning rounds), {args.ddp_rounds} of the 2-process fits; {info['minutes']} min\n"
    )
    print(markdown_table(rows))
    print(
        "\nCPU processes on 2 shared cores: scaling efficiency on CPU says nothing about GPUs, "
        "where each process has its own device and the all-reduce runs over NVLink or "
        "InfiniBand. Target for the overhead: under 5%."
    )
    path = write_results(
        "scaling_quick" if args.quick else "scaling",
        {"machine": info, "arguments": vars(args), "steps": steps, "rows": rows, "raw": raw},
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
