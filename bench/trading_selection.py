"""Which checkpoint should a trading run keep? Every epoch's policy on a fresh path, by seed.

    .venv/bin/python -m bench.trading_selection                 # momentum 0.1, 12 seeds, ~10 min
    .venv/bin/python -m bench.trading_selection --member momentum_0.2 --seeds 0 1 2
    .venv/bin/python -m bench.trading_selection --quick         # one seed, 4 epochs
    .venv/bin/python -m bench.trading_selection --reuse         # score the fits in --root again

For each seed, the shipped config is fitted once (`casebook fit`, in this process) keeping a
checkpoint of every epoch. Each epoch's policy is then backtested on a fresh path of the same
market (another seed, 100 years, scored on its last 75; as `bench.trading_family` does): there a
Sharpe's standard error is ~0.12, so the fresh Sharpe says what each epoch really captured, while
the validation split's (3 years, standard error ~0.6) is what a selection rule can see.

Selection rules compared, each as the share of the best rule's fresh Sharpe it keeps:

- best validation Sharpe (a ModelCheckpoint on val/sharpe, the config's choice until 2026-12-07),
- the last epoch (the learning rate has annealed to 0; the config's choice since),
- the best trailing mean of 3 or 5 epochs' validation Sharpe, the best validation epoch of the
  second half,
- hindsight: the epoch with the best fresh Sharpe (an upper bound no rule can reach).

A reference learner that is not RL: ridge regression of the next day's return on the newest
day's features only (the inputs of the policy's linear highway), fitted on the same training
split, traded by sign on the same fresh path, with a fixed penalty and with the penalty picked
on validation. It shows how much of the rule's Sharpe a learner that is *not told* which feature
carries the edge can expect from this much training data.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from bench.common import casebook_cli, cpu_line, machine, write_results
from bench.trading_family import MEMBERS, fresh_options, market_options
from casebook.common.tables import markdown_table
from datamodules.trading import BacktestAsset, TradingData
from lightning_modules.trading.baselines import (
    fit_ridge,
    positions_from_signal,
    sharpe_of,
)
from lightning_modules.trading.evaluation import BacktestConfig, Backtester
from lightning_modules.trading.trader import TradingAgent

ROOT = Path("runs/bench/trading_selection")
RIDGE_PENALTIES = (0.1, 1.0, 10.0, 100.0, 1000.0)
FIXED_PENALTY = 1.0


def trading_data(options: list[str], stage: str) -> tuple[TradingData, TradingAgent]:
    """The datamodule's typed data (and the untrained module, to build policies) for `options`."""
    cli = casebook_cli(options, run=False)
    cli.datamodule.prepare_data()
    cli.datamodule.setup(stage)
    return cli.datamodule.trading_data(), cli.model


def epoch_checkpoints(root: Path) -> list[Path]:
    """e<epoch>.ckpt in epoch order."""
    return sorted((root / "checkpoints").glob("e*.ckpt"), key=lambda p: int(p.stem[1:]))


def fit_every_epoch(member: str, seed: int, root: Path, extra: list[str], reuse: bool) -> None:
    """`casebook fit` keeping every epoch's checkpoint in root/checkpoints (emptied first, so
    no earlier fit's files mix in); with `reuse`, an earlier complete fit is kept instead."""
    checkpoints = root / "checkpoints"
    if reuse and (checkpoints / "last.ckpt").is_file():
        if any("-v" in p.name for p in checkpoints.glob("*.ckpt")):
            raise SystemExit(
                f"{checkpoints} holds checkpoints of several fits: refit without --reuse"
            )
        return
    shutil.rmtree(checkpoints, ignore_errors=True)
    casebook_cli(
        [
            "fit",
            *market_options(member, seed, extra),
            f"--trainer.default_root_dir={root}",
            "--checkpoint.monitor=step",
            "--checkpoint.mode=max",
            "--checkpoint.save_top_k=-1",
            "--checkpoint.filename=e{epoch}",
            "--checkpoint.auto_insert_metric_name=false",
        ]  # fmt: skip
    )


def score_epochs(root: Path, fresh: TradingData, module: TradingAgent) -> list[dict]:
    """Per epoch: its validation Sharpe (saved in the checkpoint) and its fresh-path Sharpe."""
    backtester = Backtester(fresh, BacktestConfig())
    rows = []
    for path in epoch_checkpoints(root):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        policy = module.build_policy()
        policy.load_state_dict(
            {
                k.removeprefix("policy."): v
                for k, v in checkpoint["state_dict"].items()
                if k.startswith("policy.")
            }
        )
        with torch.no_grad():
            metrics, _ = backtester.evaluate("test", [policy], [1.0], torch.device("cpu"))
        rows.append(
            {
                "epoch": int(path.stem[1:]),
                "val": checkpoint["val_sharpe"],
                "fresh": metrics["sharpe"],
                "rule": metrics["rule_best_sharpe"],
            }
        )
    return rows


def newest_day(assets: list[BacktestAsset]) -> list[BacktestAsset]:
    """The assets with only the newest day of each observation: the highway's inputs."""
    return [replace(a, market=a.market[:, :, -1:, :]) for a in assets]


def ridge_shares(data: TradingData, fresh: TradingData, rule: float) -> dict[str, float]:
    """Fresh Sharpe ÷ the best rule's (`rule`) of a newest-day ridge, with a fixed penalty and
    with the penalty picked on validation."""
    train, valid = newest_day(data.backtest("train")), newest_day(data.backtest("valid"))

    def sharpe(model, assets, source: TradingData) -> float:
        return statistics.mean(
            sharpe_of(
                positions_from_signal(model.predict(a.market).float(), source.action_mode),
                a,
                source.cost_bps,
                source.execution,
            )
            for a in assets
        )

    models = {penalty: fit_ridge(train, penalty) for penalty in RIDGE_PENALTIES}
    picked = max(models.values(), key=lambda m: sharpe(m, valid, data))
    fresh_test = newest_day(fresh.backtest("test"))
    return {
        f"ridge, penalty {FIXED_PENALTY:g}": sharpe(models[FIXED_PENALTY], fresh_test, fresh)
        / rule,
        "ridge, penalty picked on valid": sharpe(picked, fresh_test, fresh) / rule,
    }


def selections(rows: list[dict]) -> dict[str, int]:
    """Each rule's chosen epoch index."""
    val = [r["val"] for r in rows]
    n = len(val)

    def trailing(k: int) -> int:
        k = min(k, n)
        return max(range(k - 1, n), key=lambda e: sum(val[e - k + 1 : e + 1]))

    return {
        "best validation Sharpe": max(range(n), key=lambda e: val[e]),
        "last epoch": n - 1,
        "best trailing mean of 3 (validation)": trailing(3),
        "best trailing mean of 5 (validation)": trailing(5),
        "best validation, second half": max(range(n // 2, n), key=lambda e: val[e]),
        "hindsight: best fresh epoch": max(range(n), key=lambda e: rows[e]["fresh"]),
    }


def summarize(per_seed: dict[int, dict[str, float]]) -> list[dict]:
    seeds = list(per_seed)
    out = []
    for label in per_seed[seeds[0]]:
        shares = [per_seed[s][label] for s in seeds]
        out.append(
            {
                "checkpoint rule / learner": label,
                "mean share of the rule": f"{statistics.mean(shares):.0%}",
                "worst seed": f"{min(shares):.0%}",
                "seeds below 70%": f"{sum(x < 0.7 for x in shares)}/{len(shares)}",
                "by seed": " ".join(f"{x:.0%}" for x in shares),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--member", default="momentum_0.1", choices=list(MEMBERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(12)))
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--quick", action="store_true", help="one seed, 4 epochs")
    parser.add_argument(
        "--reuse", action="store_true", help="score complete earlier fits in --root again"
    )
    parser.add_argument("extra", nargs="*", help="more casebook options, e.g. --model.lr=0.002")
    args = parser.parse_args()
    if args.quick:  # its own folder: a 4-epoch fit is never scored as a full one
        args.seeds, args.extra = args.seeds[:1], [*args.extra, "--trainer.max_epochs=4"]
        args.root = args.root / "quick"
    per_seed, epochs = {}, {}
    for seed in args.seeds:
        root = args.root / f"{args.member}-seed{seed}"
        fit_every_epoch(args.member, seed, root, args.extra, args.reuse)
        fresh, module = trading_data(fresh_options(args.member, seed, args.extra), "test")
        data, _ = trading_data(market_options(args.member, seed, args.extra), "fit")
        rows = score_epochs(root, fresh, module)
        per_seed[seed] = {
            label: rows[e]["fresh"] / rows[e]["rule"] for label, e in selections(rows).items()
        } | ridge_shares(data, fresh, rows[0]["rule"])
        epochs[seed] = rows
        print(
            f"seed {seed}: " + ", ".join(f"{k} {v:.0%}" for k, v in per_seed[seed].items()),
            flush=True,
        )
    info = machine()
    table = summarize(per_seed)
    print(
        f"\nShare of the best rule's Sharpe on fresh paths ({args.member}, seeds {args.seeds}, "
        f"5 bp costs); {info['date']}, {cpu_line()}, load {info['load_average']}"
    )
    print(markdown_table(table))
    path = write_results(
        "trading_selection",
        {
            "machine": info,
            "rows": table,
            "per_seed": per_seed,
            "epochs": epochs,
            "args": vars(args),
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
