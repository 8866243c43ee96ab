"""The shipped trading config on every member of the planted-edge family, several seeds.

    .venv/bin/python -m bench.trading_family                  # the full table, ~30-40 minutes
    .venv/bin/python -m bench.trading_family --quick          # two members, one seed
    .venv/bin/python -m bench.trading_family --members momentum_0.2 none --seeds 0 1

Each run is what a user types, in this process (CasebookCLI, the same code as `casebook`):

    casebook fit  --config configs/ppo_trader.yaml --data.source synthetic --data.signal S ...
    casebook test --config configs/ppo_trader.yaml ... --ckpt_path best

with nothing changed but the market (signal, strength, noise) and the seed (of the market, the
environments and the agent). The table reports, per member, the agent's test Sharpe after 5 bp
costs against the best rule on the same test days (hindsight: the stricter bar), the rule that
validation picks, the supervised baseline and buy-and-hold; the agent's share of the best
rule; the share of runs whose report claims an edge (95% block-bootstrap interval above 0); and
the training time. Each checkpoint is then tested again on a fresh path of the same market
(another seed, 100 years, scored on its last 75 years): a 3-year test split's Sharpe has a
standard error near 0.6, as large as a weak edge, so "agent / best rule" on the test split
mixes skill with luck, and the fresh path says what the agent really captured.
`--reuse` re-scores earlier fits without training again. The target (issue: "Defaults that learn"): on every member with a tradable
edge, at least 70% of the best rule's Sharpe within 10 minutes on 2 CPU cores; on `none`, no
edge claimed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from bench.common import casebook_cli, cpu_line, machine, write_results
from casebook.cli import best_checkpoint_path
from casebook.common.tables import markdown_table

# name -> (signal, strength, noise)
MEMBERS = {
    "momentum_0.1": ("momentum", 0.1, "gaussian"),
    "momentum_0.2": ("momentum", 0.2, "gaussian"),
    "momentum_0.3": ("momentum", 0.3, "gaussian"),
    "reversal_0.2": ("reversal", 0.2, "gaussian"),
    "lead_lag_0.3": ("lead_lag", 0.3, "gaussian"),
    "regime_0.2": ("regime", 0.2, "gaussian"),
    "momentum_0.2_student_t": ("momentum", 0.2, "student_t"),
    "momentum_0.2_garch": ("momentum", 0.2, "garch"),
    "none": ("none", 0.0, "gaussian"),
}
ROOT = Path("runs/bench/trading_family")
# The fresh path: the same process drawn again with another seed, 100 years long, scored on its
# last 75% (the first 20% only fits the features' normalization and the supervised baseline).
# A 3-year test split's Sharpe has a standard error of about 0.6, as large as a weak edge; on
# 75 years it is about 0.12, so the agent's share of the rule there is what it really captured.
FRESH_DAYS, FRESH_SEED_OFFSET = 25_200, 10_000


def market_options(name: str, seed: int, extra: list[str]) -> list[str]:
    """The casebook options of one member and seed: the shipped config, the market, `extra`."""
    signal, strength, noise = MEMBERS[name]
    return [
        "--config", "configs/ppo_trader.yaml", "--config", "configs/presets/csv.yaml",
        "--data.source=synthetic", f"--data.signal={signal}",
        f"--data.synthetic.strength={strength}", f"--data.synthetic.noise={noise}",
        f"--data.seed={seed}", f"--seed_everything={seed}",
        "--trainer.enable_progress_bar=false", *extra,
    ]  # fmt: skip


def fresh_options(name: str, seed: int, extra: list[str]) -> list[str]:
    """The same market drawn again with another seed, FRESH_DAYS long, tested on its last 75%."""
    return [
        *market_options(name, seed, extra), f"--data.seed={seed + FRESH_SEED_OFFSET}",
        f"--data.synthetic.days={FRESH_DAYS}", "--data.splits.train_share=0.2",
        "--data.splits.valid_share=0.05",
    ]  # fmt: skip


def run_member(
    name: str, seed: int, extra: list[str], reuse: bool = False, base: Path = ROOT
) -> dict:
    """fit + test of the shipped config on one member and seed, then a test of the same
    checkpoint on a fresh long path of the same market; the metrics and times. `reuse` skips the
    fit when the run's folder already holds a checkpoint (to re-score earlier fits)."""
    common, fresh = market_options(name, seed, extra), fresh_options(name, seed, extra)
    metrics = fit_and_test(base / f"{name}-seed{seed}", common, fresh, reuse)
    return {"member": name, "seed": seed, **metrics}


def fit_and_test(root: Path, common: list[str], fresh: list[str], reuse: bool = False) -> dict:
    """`casebook fit` with `common` into `root`, `casebook test --ckpt_path best`, then the same
    checkpoint (and the last epoch's, if another) tested with `fresh`: test/*, fresh/*, fit time."""
    started = time.perf_counter()
    fit_seconds = float("nan")  # a reused fit was not timed here
    last = root / "checkpoints" / "last.ckpt"
    if not (reuse and last.is_file()):
        casebook_cli(["fit", *common, f"--trainer.default_root_dir={root}"])
        fit_seconds = time.perf_counter() - started
    metrics = tested(common, root, "best")
    # the checkpoint `--ckpt_path best` tested (a refit into the same folder leaves older files)
    last_state = torch.load(last, map_location="cpu", weights_only=True)
    kept = Path(best_checkpoint_path(last_state))
    picked = tested(fresh, root / "fresh", kept)
    metrics |= {f"fresh/{key.removeprefix('test/')}": v for key, v in picked.items()}
    # the last epoch's weights on the same fresh path: is picking by validation Sharpe better
    # than no picking at all? (The same weights when the config keeps the last epoch.)
    kept_step = torch.load(kept, map_location="cpu", weights_only=True)["global_step"]
    if kept_step != last_state["global_step"]:
        picked = tested(fresh, root / "fresh_last", last)
    metrics["fresh/last_sharpe"] = picked["test/sharpe"]
    return {"fit_seconds": fit_seconds, **metrics}


def tested(options: list[str], root: Path, checkpoint: str | Path) -> dict:
    """`casebook test` of `checkpoint` (or "best") into `root`: its test_metrics.json."""
    casebook_cli(
        ["test", *options, f"--trainer.default_root_dir={root}", f"--ckpt_path={checkpoint}"]
    )
    return json.loads((root / "test_metrics.json").read_text())


def summarize(results: list[dict], has_edge=lambda name: MEMBERS[name][0] != "none") -> list[dict]:
    """One row per member: means (worst seed) of the agent's Sharpe and its share of the best
    rule's, on the test split and on the fresh path; `has_edge(member)` is False for markets with
    nothing to find (a share of a rule's luck on pure noise means nothing)."""
    rows = []
    for name in dict.fromkeys(r["member"] for r in results):
        runs = [r for r in results if r["member"] == name]
        edge = has_edge(name)

        def mean(key: str, runs=runs) -> float:
            return statistics.mean(r[key] for r in runs)

        shares = [
            r["test/sharpe"] / r["test/rule_best_sharpe"]
            for r in runs
            if edge and r["test/rule_best_sharpe"] > 0
        ]
        fresh = [
            r["fresh/sharpe"] / r["fresh/rule_best_sharpe"]
            for r in runs
            if edge and r["fresh/rule_best_sharpe"] > 0
        ]

        fresh_last = [
            r["fresh/last_sharpe"] / r["fresh/rule_best_sharpe"]
            for r in runs
            if edge and r["fresh/rule_best_sharpe"] > 0
        ]

        def share(values: list[float]) -> str:  # mean (worst seed) of the agent's share
            return f"{statistics.mean(values):.0%} ({min(values):.0%})" if values else "n/a"

        def claimed(split: str, runs=runs) -> str:
            return f"{sum(r[f'{split}/edge_found'] > 0 for r in runs)}/{len(runs)}"

        rows.append(
            {
                "market": name,
                "seeds": len(runs),
                "agent": f"{mean('test/sharpe'):.2f} ({min(r['test/sharpe'] for r in runs):.2f})",
                "best rule (hindsight)": mean("test/rule_best_sharpe"),
                "rule picked on valid": mean("test/rule_sharpe"),
                "supervised": mean("test/supervised_sharpe"),
                "buy and hold": mean("test/buy_and_hold_sharpe"),
                "agent / best rule (worst)": share(shares),
                "fresh: agent, rule": f"{mean('fresh/sharpe'):.2f}, {mean('fresh/rule_best_sharpe'):.2f}",
                "fresh: agent / rule (worst)": share(fresh),
                "fresh: last epoch / rule (worst)": share(fresh_last),
                "edge claimed: test, fresh": f"{claimed('test')}, {claimed('fresh')}",
                "fit s": mean("fit_seconds"),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", nargs="+", default=list(MEMBERS), choices=list(MEMBERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="two members, one seed")
    parser.add_argument(
        "--reuse", action="store_true", help="re-score runs whose checkpoint exists, no refit"
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=ROOT,
        help=f"where the runs go (default {ROOT}): one per variant",
    )
    parser.add_argument("extra", nargs="*", help="more casebook options, e.g. --model.lr=0.002")
    args = parser.parse_args()
    if args.quick:
        args.members, args.seeds = ["momentum_0.3", "none"], [0]
    results = []
    for name in args.members:
        for seed in args.seeds:
            results.append(run_member(name, seed, args.extra, args.reuse, args.root))
            print_run(results[-1])
    report("trading_family", "on the planted family, test split", summarize(results), results, args)


def print_run(result: dict) -> None:
    """One line per fit, as the benchmark goes."""
    print(
        f"{result['member']} seed {result['seed']}: agent {result['test/sharpe']:.2f}, best rule "
        f"{result['test/rule_best_sharpe']:.2f}; fresh path: agent "
        f"{result['fresh/sharpe']:.2f}, rule {result['fresh/rule_best_sharpe']:.2f}; "
        f"fit {result['fit_seconds']:.0f} s",
        flush=True,
    )


def report(name: str, what: str, rows: list[dict], results: list[dict], args) -> None:
    """Prints the table with the date, the CPU and its ISA flags and the load; saves the JSON."""
    info = machine()
    print(
        f"\nShipped config (configs/ppo_trader.yaml) {what}, 5 bp costs; "
        f"{info['date']}, {cpu_line()}, load {info['load_average']}"
    )
    print(markdown_table(rows))
    path = write_results(name, {"machine": info, "rows": rows, "runs": results, "args": vars(args)})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
