"""What `callbacks.GradNormMonitor` costs, as a fraction of a training step, on this CPU.

    .venv/bin/python -m bench.monitor_overhead            # about 4 minutes
    .venv/bin/python -m bench.monitor_overhead --quick    # under a minute

Each model trains under `lightning.Trainer.fit` four ways at once: without the monitor, a second
time without it (an A/A control: the method's own noise floor), with the monitor's defaults
(global gradient norm every step, per-layer norms every 50 steps, activation statistics every
100) and with everything every step (the worst case). The fits run in threads of one process and
take turns one training step at a time, in a shuffled order each round, so they share the
machine's load step by step while each keeps its own Trainer, model and logged metrics (sharing
one Trainer would bill the monitor's metric keys to the baseline's logging too). "every step"
does the same work on every step; it takes a turn every 5th round only, to keep the run short.

A step is timed from its `on_train_batch_start` to the next: the monitor's every hook, the data
fetch and Lightning's logging included (no logger attached: `logger=False`). Two clocks: the
stepping thread's CPU time (steadier while other workers load the machine) and wall time.
Overheads compare means over whole 100-round windows (one activation-sampling period: the
amortized cost a run pays) and, for wall time, also medians (the cost of an ordinary step).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import random
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from bench.common import load_average, machine, quiet_trainer, write_results
from callbacks import GradNormMonitor
from casebook.common.tables import markdown_table
from lightning_modules.trading import TradingPolicy

SETTINGS: dict[str, Callable[[], list[L.Callback]]] = {
    "off": lambda: [],
    "off again (A/A control)": lambda: [],  # a second baseline: the method's own noise floor
    "default": lambda: [GradNormMonitor()],
    "every step": lambda: [GradNormMonitor(log_every_n_steps=1, activation_every_n_steps=1)],
}


class SameBatch(IterableDataset):
    """One pre-made batch `length` times: no data-loading cost to blur the comparison."""

    def __init__(self, batch: tuple[torch.Tensor, ...], length: int) -> None:
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return (self.batch for _ in range(self.length))


class Supervised(L.LightningModule):
    """A network and its loss, Adam, automatic optimization: the plainest Lightning step."""

    def __init__(self, net: nn.Module, loss: Callable) -> None:
        super().__init__()
        self.net, self.loss = net, loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self.net, batch)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def regression_loss(net: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(net(x), y)


def classification_loss(net: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.cross_entropy(net(x), y)


def ppo_loss(policy: TradingPolicy, batch) -> torch.Tensor:
    """The terms of PPOTrader's minibatch loss (clipped surrogate, entropy, value, auxiliary),
    without its value clipping: the same forward and backward through the policy."""
    market, position, action, old_logprob, advantage, returns = batch
    dist, value, aux = policy(market, position)
    ratio = (dist.log_prob(action) - old_logprob).exp()
    surrogate = torch.max(-advantage * ratio, -advantage * ratio.clamp(0.8, 1.2)).mean()
    return (
        surrogate
        - 0.01 * dist.entropy().mean()
        + 0.25 * ((value - returns) ** 2).mean()
        + 0.1 * ((aux - returns) ** 2).mean()
    )


def workloads(policy_batch: int) -> dict[str, tuple[Callable[[], nn.Module], Callable, tuple]]:
    """name -> (network factory, loss, one batch)."""
    g = torch.Generator().manual_seed(0)

    def tiny() -> nn.Module:  # tests/support/tiny_task.py's TinyRegressor
        return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def mlp() -> nn.Module:
        return nn.Sequential(
            nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1)
        )

    def cnn() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, 10),
        )

    observation_shape = (3, 32, 6)  # configs/ppo_trader.yaml: 3 timeframes, 32 days, 6 features

    def policy() -> nn.Module:  # configs/ppo_trader.yaml's network
        return TradingPolicy(observation_shape, 3, width=16, depth=6, norm="group", hidden=64)

    n = policy_batch
    return {
        "tiny MLP 4-8-1, batch 16": (
            tiny,
            regression_loss,
            (torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)),
        ),
        "MLP 64-256-256-1, batch 128": (
            mlp,
            regression_loss,
            (torch.randn(128, 64, generator=g), torch.randn(128, 1, generator=g)),
        ),
        "CNN 3x32x32, 3 conv, batch 32": (
            cnn,
            classification_loss,
            (torch.randn(32, 3, 32, 32, generator=g), torch.randint(10, (32,), generator=g)),
        ),
        f"PPOTrader policy, batch {n}": (
            policy,
            ppo_loss,
            (
                torch.randn(n, *observation_shape, generator=g),
                torch.randint(3, (n,), generator=g).float() - 1.0,
                torch.randint(3, (n,), generator=g),
                torch.full((n,), -1.0986),  # log(1/3): a fresh policy's log-probability
                torch.randn(n, generator=g),
                torch.randn(n, generator=g),
            ),
        ),
    }


class Turns:
    """A schedule of whose training step runs next, for fits running in threads."""

    def __init__(self, schedule: list[str]) -> None:
        self.schedule = schedule
        self.position = 0
        self.failed = False
        self.condition = threading.Condition()
        self.all_ready = threading.Barrier(len(set(schedule)))

    def wait_for(self, name: str) -> None:
        with self.condition:
            self.condition.wait_for(
                lambda: (
                    self.failed
                    or (self.position < len(self.schedule) and self.schedule[self.position] == name)
                )
            )
            if self.failed:
                raise RuntimeError("another fit failed")

    def done(self) -> None:
        with self.condition:
            self.position += 1
            self.condition.notify_all()

    def fail(self) -> None:
        with self.condition:
            self.failed = True
            self.condition.notify_all()
        self.all_ready.abort()


class TakeTurns(L.Callback):
    """First callback of each fit: runs one step per turn and times it (wall and thread CPU)."""

    def __init__(self, turns: Turns, name: str) -> None:
        self.turns, self.name = turns, name
        self.started: tuple[float, float] | None = None
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def _end_step(self) -> None:
        if self.started is not None:
            self.wall.append(time.perf_counter() - self.started[0])
            self.cpu.append(time.thread_time() - self.started[1])
            self.turns.done()

    def on_train_batch_start(self, *args) -> None:
        if self.started is None:
            self.turns.all_ready.wait()  # no fit's setup overlaps another's timed step
        self._end_step()
        self.turns.wait_for(self.name)
        self.started = (time.perf_counter(), time.thread_time())

    def on_train_end(self, *args) -> None:
        self._end_step()


def schedule(rounds: int, every_step_stride: int, seed: int = 0) -> list[str]:
    """Turns, round by round in shuffled order; one more round of all three at the end, untimed,
    during which the fits that finish tear down."""
    rng = random.Random(seed)
    turns = []
    for r in range(rounds + 1):
        members = [s for s in SETTINGS if s != "every step" or r % every_step_stride == 0]
        if r == rounds:
            members = list(SETTINGS)
        rng.shuffle(members)
        turns += members
    return turns


def lockstep_fits(make_net, loss, batch, rounds: int, stride: int) -> dict[str, TakeTurns]:
    turns = Turns(schedule(rounds, stride))
    timers, errors = {}, []

    def fit(setting: str) -> None:
        try:
            steps = turns.schedule.count(setting)
            torch.manual_seed(0)  # the same initial weights for every setting
            timers[setting] = TakeTurns(turns, setting)
            trainer = quiet_trainer(
                max_steps=steps, callbacks=[timers[setting], *SETTINGS[setting]()]
            )
            loader = DataLoader(SameBatch(batch, steps), batch_size=None)
            trainer.fit(Supervised(make_net(), loss), train_dataloaders=loader)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
            turns.fail()

    threads = [threading.Thread(target=fit, args=(s,), name=s) for s in SETTINGS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return timers


def measure(name: str, workload, rounds: int, warm_up: int, stride: int = 5, window: int = 100):
    """Rows of the table for one model, and the raw step times."""
    make_net, loss, batch = workload
    if warm_up:
        lockstep_fits(make_net, loss, batch, warm_up, stride)  # untimed
    load_before = load_average()[0]
    # Everything alive now (torch, Lightning, the warm-up's garbage collected) leaves the
    # collector's view: a full collection then costs milliseconds, not the ~300 ms that once
    # landed on one random step of one fit.
    gc.collect()
    gc.freeze()
    timers = lockstep_fits(make_net, loss, batch, rounds, stride)
    gc.unfreeze()
    loads = (load_before, load_average()[0])
    # Windows of `window` rounds, paired across settings (the same rounds of the same run).
    per_window = {s: window // stride if s == "every step" else window for s in SETTINGS}
    windows = max(1, rounds // window)

    def chunks(setting: str, clock: str) -> list[list[float]]:
        times = getattr(timers[setting], clock)[:-1]  # the last step ran during tear-downs
        size = per_window[setting]
        return [times[k * size : (k + 1) * size] for k in range(windows)]

    def overheads(setting: str, clock: str, statistic) -> list[float]:
        pairs = zip(chunks(setting, clock), chunks("off", clock))
        return [100 * (statistic(x) / statistic(base) - 1) for x, base in pairs]

    mean_cpu = {s: statistics.mean(timers[s].cpu[:-1]) for s in SETTINGS}
    rows = []
    for setting in SETTINGS:
        cpu = overheads(setting, "cpu", statistics.mean)
        rows.append(
            {
                "model": name,
                "monitor": setting,
                "steps": len(timers[setting].cpu) - 1,
                "CPU ms/step (mean)": 1e3 * mean_cpu[setting],
                "added CPU ms/step": 1e3 * (mean_cpu[setting] - mean_cpu["off"]),
                "wall ms/step (median)": 1e3 * statistics.median(timers[setting].wall[:-1]),
                "overhead % (CPU, mean)": statistics.median(cpu),
                "CPU overhead % per window": " / ".join(f"{x:.1f}" for x in cpu),
                "overhead % (wall, mean)": statistics.median(
                    overheads(setting, "wall", statistics.mean)
                ),
                "overhead % (wall, median)": statistics.median(
                    overheads(setting, "wall", statistics.median)
                ),
                "load (1 min)": f"{min(loads):.1f}-{max(loads):.1f}",
            }
        )
    raw = {s: {"wall": timers[s].wall, "cpu": timers[s].cpu} for s in SETTINGS}
    return rows, {"model": name, "step_seconds": raw, "load": loads}


def one_malloc_arena() -> None:
    """Make every thread allocate from glibc's main arena, as a single-threaded run does.

    With one arena per thread, three identical baseline fits (an A/A/A test) differed by up to
    16% in CPU time per step (arena placement, not work); with one arena, by 1-3%."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: nothing to do
    libc.mallopt(-8, 1)  # M_ARENA_MAX = 1, before any fit thread starts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="under a minute: one window")
    parser.add_argument(
        "--rounds", type=int, help="turns per fit, a multiple of 100 (default 400, quick 100)"
    )
    parser.add_argument(
        "--policy-batch", type=int, help="PPOTrader policy batch (default 32, quick 16)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: the cores are shared)"
    )
    args = parser.parse_args()
    rounds = args.rounds or (100 if args.quick else 400)
    warm_up = 5 if args.quick else 20
    policy_batch = args.policy_batch or (16 if args.quick else 32)

    torch.set_num_threads(args.threads)
    one_malloc_arena()
    logging.getLogger("lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    # The MLP memorizes its one batch and its gradients vanish: true, and not what is measured.
    warnings.filterwarnings("ignore", message="GradNormMonitor: gradient norm")

    info = machine()
    print(f"# monitor_overhead  {info}\n", flush=True)
    rows, raw = [], []
    for name, workload in workloads(policy_batch).items():
        model_rows, model_raw = measure(name, workload, rounds, warm_up)
        print(markdown_table(model_rows), "\n", flush=True)
        rows += model_rows
        raw.append(model_raw)
    info["load_average_end"] = load_average()

    print("## Summary\n")
    print(
        f"{info['date']}; load average {info['load_average']} at start, "
        f"{info['load_average_end']} at end; {info['cpu_count']} CPUs, torch threads "
        f"{torch.get_num_threads()}; {rounds} rounds in lockstep ('every step' in every 5th); "
        f"overheads are medians over windows of 100 rounds\n"
    )
    print(markdown_table(rows))
    defaults = [r for r in rows if r["monitor"] == "default"]
    worst = max(defaults, key=lambda r: r["overhead % (CPU, mean)"])
    print(
        f"\nworst default-settings overhead (CPU, mean step): "
        f"{worst['overhead % (CPU, mean)']:.1f}% on {worst['model']} (target: under 5%)"
    )
    path = write_results(
        "monitor_overhead_quick" if args.quick else "monitor_overhead",
        {"machine": info, "arguments": vars(args), "rows": rows, "raw": raw},
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
