"""The cost of one PPO minibatch through each trading policy, measured side by side.

    .venv/bin/python -m bench.trading_policy            # about 4 minutes
    .venv/bin/python -m bench.trading_policy --threads 1 2 --minibatch 256

One PPO minibatch = forward (distribution, value, auxiliary head), the PPO losses, backward
and the optimizer step, on random observations of the shipped config's shape, for:

- the policy as it was before this benchmark existed (`SquareConvPolicy`, 3x3 separable
  convolutions over the square, GELU, width 16, depth 6, its AdamW), on the observation the old
  config shipped (window 32: the issue's "today", the ratios' reference) and on today's window,
- the shipped default (`TemporalConvPolicy` with configs/ppo_trader.yaml's settings, and
  PPOTrader's optimizer and clipping: `LeanAdamW`, `clip_grad_norm`),
- variants of it (width, depth, patch, norm, activation), so the rationale's numbers are here.

Rounds interleave the variants and each reports its median step; each thread count is measured
in `--processes` fresh processes (3), and the table gives the median step over them and the
ratio to the old policy taken within each process (median, lowest, highest): ratios are taken
within one run on one CPU (named with its ISA flags in the table).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
import yaml

from bench.common import cpu_line, machine, write_results
from casebook.common.tables import markdown_table
from lightning_modules.common import LeanAdamW, clip_grad_norm, decay_groups
from lightning_modules.trading import PPOConfig, PPOTrader, SquareConvPolicy, TemporalConvPolicy

CONFIG = "configs/ppo_trader.yaml"
OLD_WINDOW = 32  # the window of the config before the temporal policy
OLD_SHAPE = (3, OLD_WINDOW, 6)


def shipped_policy_options() -> tuple[dict, int]:
    """The default policy's init_args and the data window from configs/ppo_trader.yaml."""
    config = yaml.safe_load(Path(CONFIG).read_text())
    return (
        config["model"]["init_args"]["policy"]["init_args"],
        config["data"]["init_args"]["window"],
    )


def torch_clip(parameters, max_norm: float) -> None:  # the old module's clipping
    torch.nn.utils.clip_grad_norm_(parameters, max_norm, foreach=True)


def step_function(policy, optimizer, clip, shape, minibatch: int):
    """One PPO minibatch update through `policy`, as PPOTrader.losses computes it."""
    generator = torch.Generator().manual_seed(0)
    market = torch.randn(minibatch, *shape, generator=generator)
    position = torch.randint(-1, 2, (minibatch,), generator=generator).float()
    action = torch.randint(0, 3, (minibatch,), generator=generator)
    old_logprob = torch.full((minibatch,), -1.1)
    advantage = torch.randn(minibatch, generator=generator)
    returns, aux_target = torch.randn(minibatch, generator=generator), torch.randn(minibatch)
    trader = PPOTrader.__new__(PPOTrader)  # only `losses`, bound to this policy
    torch.nn.Module.__init__(trader)
    trader.policy, trader.config = policy, PPOConfig(aux_coef=0.1)
    batch = {
        "market": market, "position": position, "action": action, "logprob": old_logprob,
        "value": returns * 0, "return": returns, "advantage": advantage, "aux_target": aux_target,
    }  # fmt: skip

    def step() -> None:
        loss = trader.losses(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        clip(policy.parameters(), 0.5)
        optimizer.step()

    return step


def variants(shape: tuple[int, int, int]) -> dict[str, tuple]:
    options, _ = shipped_policy_options()
    shipped = partial(TemporalConvPolicy, **options)

    def lean_adamw(policy):  # PPOTrader's optimizer and clipping
        optimizer = LeanAdamW(decay_groups(policy.parameters(), 0.0), lr=1e-3, eps=1e-5)
        return optimizer, clip_grad_norm

    def old_adamw(policy):  # the old module's: AdamW, not fused, and torch's clipping
        optimizer = torch.optim.AdamW(decay_groups(policy.parameters(), 0.0), lr=1e-3, eps=1e-5)
        return optimizer, torch_clip

    def before(input_shape):
        return SquareConvPolicy(
            input_shape, 3, width=16, depth=6, norm="group", coord_channels=True, hidden=64
        )

    out = {
        # The policy and the observation the old config shipped (window 32): the "today".
        f"before, as shipped (square 3x3, GELU, width 16, depth 6, window {OLD_WINDOW})": (
            before(OLD_SHAPE),
            old_adamw,
            OLD_SHAPE,
        ),
        f"before, on today's window {shape[1]}": (before(shape), old_adamw, shape),
        "shipped (temporal, " + ", ".join(f"{k} {v}" for k, v in options.items()) + ")": (
            shipped(shape, 3),
            lean_adamw,
            shape,
        ),
    }
    for label, change in (
        ("shipped, width 64", {"width": 64}),
        ("shipped, depth 8", {"depth": 8}),
        ("shipped, patches of 4 days", {"time_patch": 4}),
        ("shipped, layer norm", {"norm": "layer"}),
        ("shipped, GELU", {"activation": "gelu"}),
        ("shipped, no highway", {"highway": False}),
    ):
        out[label] = (partial(shipped, **change)(shape, 3), lean_adamw, shape)
    return out


def measure(threads: int, minibatch: int, rounds: int, steps: int) -> list[dict]:
    """One process's median step per variant (rounds interleave the variants)."""
    torch.set_num_threads(threads)
    _, window = shipped_policy_options()
    shape = (3, window, 6)
    torch.manual_seed(0)
    runs = {}
    for label, (policy, make_optimizer, input_shape) in variants(shape).items():
        runs[label] = step_function(policy, *make_optimizer(policy), input_shape, minibatch)
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(rounds):
        for label, step in runs.items():
            repeats = max(2, steps // 10) if label.startswith("before") else steps
            step()  # warm-up
            for _ in range(repeats):
                start = time.perf_counter()
                step()
                times[label].append(time.perf_counter() - start)
    return [
        {"policy": label, "ms": statistics.median(samples) * 1e3}
        for label, samples in times.items()
    ]


def in_fresh_process(threads: int, args: argparse.Namespace) -> list[dict]:
    """`measure` in a new Python process: its memory layout, allocator state and page mapping are
    its own (on this VM, the same step's median moved by up to 1.6x from one process to the
    next, more than between variants within a process)."""
    command = [sys.executable, "-m", "bench.trading_policy", "--worker", "--threads", str(threads)]
    command += ["--minibatch", str(args.minibatch), "--rounds", str(args.rounds)]
    command += ["--steps", str(args.steps)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(threads: int, minibatch: int, processes: list[list[dict]]) -> list[dict]:
    """Per variant: the median step over processes, and its ratio to the old policy as shipped
    (taken within each process, then the median, lowest and highest over processes)."""
    rows = []
    for index, first in enumerate(processes[0]):
        steps = [process[index]["ms"] for process in processes]
        ratios = [process[0]["ms"] / process[index]["ms"] for process in processes]
        rows.append(
            {
                "policy": first["policy"],
                "threads": threads,
                "minibatch": minibatch,
                "ms per minibatch": statistics.median(steps),
                "× faster than before, as shipped": statistics.median(ratios),
                "lowest–highest ×": f"{min(ratios):.1f}–{max(ratios):.1f}",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--minibatch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round and variant")
    parser.add_argument(
        "--processes", type=int, default=3, help="fresh processes per thread count (median)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one process's measurement, as JSON for the parent
        print(json.dumps(measure(args.threads[0], args.minibatch, args.rounds, args.steps)))
        return
    rows = []
    for threads in args.threads:
        processes = [in_fresh_process(threads, args) for _ in range(args.processes)]
        rows += summarize(threads, args.minibatch, processes)
    info = machine()
    print(
        f"PPO minibatch cost per policy; {info['date']}, {cpu_line()}, load {info['load_average']}"
        f"; median of {args.processes} processes per thread count"
    )
    print(markdown_table(rows))
    path = write_results("trading_policy", {"machine": info, "rows": rows, "args": vars(args)})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
