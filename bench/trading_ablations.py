"""Trading ablations: each design choice of the shipped agent switched one at a time, on the
planted-edge family and on S&P 500 / NASDAQ walk-forward folds, with several seeds.

    .venv/bin/python -m bench.trading_ablations --quick        # 2 ablations x 2 markets x 1 seed
    .venv/bin/python -m bench.trading_ablations                # everything: TIME_FULL_RUN
    .venv/bin/python -m bench.trading_ablations --ablations baseline norm_batch a2c \\
        --markets momentum_0.2 none sp500_wf3 --seeds 0 1 --epochs 8

A default fit (the shipped config on one market) took TIME_ONE_FIT on one thread (measured with
`--ablations baseline --markets momentum_0.2 --seeds 0`). The default run is NUMBER_OF_FITS such
fits, so plan for TIME_FULL_RUN; the `--ablations`, `--markets`, `--seeds` and `--epochs` options
trim it. Every finished fit is cached in bench/results/trading_ablations_cache.json, keyed by
(ablation, market, seed, hash of the resolved config), so an interrupted run picks up where it
stopped and a second run with more seeds only fits the new ones (`--refit` ignores the cache).
The baseline's kept policies are saved beside it (trading_ablations_policies/) for the
ensemble.

Method. The baseline is configs/ppo_trader.yaml as shipped: its model, its data settings and
its trainer's max_epochs and max_time (its monitoring callbacks and logger are left out: they
watch training, they do not change it). Each ablation is a named override of that config (see
ABLATIONS; `a2c` merges configs/a2c_trader.yaml on top, as `casebook fit --config ...
--config configs/a2c_trader.yaml` does). Each (ablation, market, seed) is fitted in this process
with a Lightning Trainer (no logger, no checkpoint files, no progress bar); the policy kept is
the one the shipped config's checkpoint keeps (since 2026-12-07 the last epoch's,
`checkpoint.monitor: step`; with `val/sharpe` the best validation Sharpe's, which a callback
remembers), and that policy is backtested once on the test split (`Backtester.evaluate`, 5 bp
costs, block-bootstrap 95% interval). The seed sets the agent (initialization, action sampling) and the training
environments' episode draws; the market itself is the same for every seed (`--market-seed`),
so the seeds of one market can form an ensemble and every ablation sees the same days.

Markets. Planted members (datamodules/trading/synthetic.py) are named <signal>_<strength>, with
a _<noise> suffix when not Gaussian; their test split is the last 15% of the calendar. Real
markets are <sp500|nasdaq>_wf<k>: walk-forward fold k of 4 (`Splits(mode="walk_forward")`): the
first 85% of the calendar is cut into 5 chunks, fold k trains on chunks 0..k and validates on
chunk k+1; the test split is the last 15%, the same days for every fold.

Definitions.
- Test Sharpe: annualized Sharpe ratio of the daily net log returns of the kept
  policy on the test split. "mean ± std" is over seeds; "% of best rule" is the mean test Sharpe
  over the best rule's on the same days (hindsight: the best of the rule baselines on the test
  split), shown for markets with a planted edge.
- Training consistency (the notes' term), from the validation Sharpe measured after every epoch:
  "val jitter" is the standard deviation of its epoch-to-epoch changes (a steady trend adds
  nothing, a zig-zag adds its amplitude); "late std" is its standard deviation over the second
  half of the epochs. Both in Sharpe units, averaged over markets and seeds.
- Ensemble (the `ensemble` row; no training of its own): the baseline's kept
  policies of all seeds on one market (on real data: one fold), their action probabilities
  averaged with weights ∝ each one's positive validation Sharpe (`ensemble_weights(...,
  "val_sharpe")`, through `backtest_positions`), against the single policies' mean (baseline row).
- Real data, per ablation and asset: the strategy judged is the equal-capital portfolio of all
  that ablation's fits on the asset (every fold and seed; for `ensemble`, every fold's
  ensemble), rebalanced daily: r_t = log(mean_i exp(r_i,t)). Its test Sharpe has a 95%
  circular block-bootstrap interval (21-day blocks, `sharpe_interval`). The deflated Sharpe
  ratio (Bailey & López de Prado 2014, `deflated_sharpe_ratio`) of each row counts the rows of
  that asset as the trials (one per configuration tried: the folds and seeds inside a row are
  averaged, not chosen among): the probability that the row's true Sharpe beats the best that
  as many unskilled configurations would show. Under each asset the table names the best
  configuration with its DSR, and, stricter, the best single fit against all single fits.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib
import json
import logging
import math
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from bench.common import (
    RESULTS_DIR,
    cpu_line,
    machine,
    quiet_trainer,
    write_results,
)
from casebook.common.tables import markdown_table
from lightning_modules.trading.backtest import deflated_sharpe_ratio, performance, sharpe_interval
from lightning_modules.trading.evaluation import (
    Backtester,
    BestValidationPolicy,
    ensemble_weights,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/ppo_trader.yaml"
A2C_CONFIG = REPO / "configs/a2c_trader.yaml"
CACHE = RESULTS_DIR / "trading_ablations_cache.json"
POLICIES = RESULTS_DIR / "trading_ablations_policies"
# (checkpoint.monitor, mode) of the shipped config -> the policy its checkpoint keeps
KEPT_POLICY = {
    ("step", "max"): "last",
    ("epoch", "max"): "last",
    (None, "min"): "last",  # no monitor: ModelCheckpoint keeps the latest
    (None, "max"): "last",
    ("val/sharpe", "max"): "best_validation",
}
CACHE_VERSION = 2  # bump when what a cached fit records changes (2: kept_epoch)
POLICY = "model.init_args.policy"
POLICY_ARGS = f"{POLICY}.init_args"
# Trainer settings of the shipped yaml that are not the training itself: replaced by a quiet
# Trainer's (bench.common.quiet_trainer) and the best-validation callback.
NOT_TRAINING = ("default_root_dir", "callbacks", "logger", "enable_checkpointing")
REFERENCES = {  # the baselines every backtest reports: test/<key> in the CLI's metrics
    "rule_best_sharpe": "best rule (hindsight)",
    "rule_sharpe": "rule picked on valid",
    "supervised_sharpe": "supervised",
    "buy_and_hold_sharpe": "buy and hold",
    "random_sharpe": "random",
}


@dataclass(frozen=True)
class Ablation:
    """One change to the shipped config: merge `config_files`, then set dotted paths."""

    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    config_files: tuple[Path, ...] = ()


ABLATIONS = {
    "baseline": Ablation("configs/ppo_trader.yaml as shipped"),
    "norm_layer": Ablation("LayerNorm in every block", {f"{POLICY_ARGS}.norm": "layer"}),
    "norm_group": Ablation("GroupNorm in every block", {f"{POLICY_ARGS}.norm": "group"}),
    "norm_batch": Ablation("BatchNorm in every block", {f"{POLICY_ARGS}.norm": "batch"}),
    "position_off": Ablation(
        "no recency embedding (the 1-D CoordConv)", {f"{POLICY_ARGS}.position": False}
    ),
    # Without the highway every weight trains at lr x deep_lr_ratio (PPOTrader's optimizer).
    "highway_off": Ablation("no linear highway", {f"{POLICY_ARGS}.highway": False}),
    "depth_2": Ablation("2 blocks", {f"{POLICY_ARGS}.depth": 2}),
    "depth_8": Ablation("8 blocks", {f"{POLICY_ARGS}.depth": 8}),
    "width_16": Ablation("width 16", {f"{POLICY_ARGS}.width": 16}),
    "width_64": Ablation("width 64", {f"{POLICY_ARGS}.width": 64}),
    "aux_head": Ablation(
        "auxiliary next-day-return head trained (ppo.aux_coef 0.1)",
        {"model.init_args.ppo.aux_coef": 0.1},
    ),
    "a2c": Ablation("A2CTrader, configs/a2c_trader.yaml's settings", config_files=(A2C_CONFIG,)),
    # The design before the temporal policy, as bench/trading_policy.py builds it. It has no
    # highway, so, like highway_off, it trains at lr x deep_lr_ratio.
    "square_conv": Ablation(
        "old SquareConvPolicy: 3x3 over the square, GroupNorm, CoordConv, GELU, width 16, depth 6",
        {
            POLICY: {
                "class_path": "lightning_modules.trading.SquareConvPolicy",
                "init_args": dict(width=16, depth=6, norm="group", coord_channels=True, hidden=64),
            }
        },
    ),
}
ENSEMBLE = "ensemble"  # no fits of its own: the baseline's seeds, Sharpe-weighted
ENSEMBLE_OF = "baseline"
ALL_ABLATIONS = [*ABLATIONS, ENSEMBLE]


@dataclass(frozen=True)
class Market:
    """What a market changes in `data.init_args` (dotted paths below it)."""

    data: dict[str, Any]
    asset: str  # the traded asset (the real-data table's grouping)
    fold: int | None = None  # walk-forward fold (real data)

    @property
    def real(self) -> bool:
        return self.data["source"] != "synthetic"

    @property
    def planted_edge(self) -> bool:
        return self.data.get("signal") not in (None, "none")


def planted(signal: str, strength: float, noise: str = "gaussian") -> Market:
    data = {"source": "synthetic", "signal": signal, "synthetic.strength": strength}
    data["synthetic.noise"] = noise
    return Market(data, asset=f"planted {signal}")


FOLDS = 4


def walk_forward(source: str, fold: int) -> Market:
    data = {"source": source, "splits": {"mode": "walk_forward", "folds": FOLDS, "fold": fold}}
    return Market(data, asset=source, fold=fold)


MARKETS = {
    "momentum_0.2": planted("momentum", 0.2),
    "reversal_0.2": planted("reversal", 0.2),
    "lead_lag_0.3": planted("lead_lag", 0.3),
    "regime_0.2": planted("regime", 0.2),
    "none": planted("none", 0.0),
    "momentum_0.2_student_t": planted("momentum", 0.2, "student_t"),
    "momentum_0.2_garch": planted("momentum", 0.2, "garch"),
    **{f"{s}_wf{k}": walk_forward(s, k) for s in ("sp500", "nasdaq") for k in range(FOLDS)},
}
DEFAULT_MARKETS = [
    "momentum_0.2", "reversal_0.2", "lead_lag_0.3", "regime_0.2", "none",
    "sp500_wf1", "sp500_wf3", "nasdaq_wf1", "nasdaq_wf3",
]  # fmt: skip
QUICK = dict(
    ablations=["baseline", "norm_layer", ENSEMBLE],
    markets=["momentum_0.2", "sp500_wf3"],
    seeds=[0],
    epochs=2,
    synthetic_days=2500,
)


# ---------------------------------------------------------------------------- configuration
def set_path(config: dict, path: str, value: Any) -> None:
    """config["a"]["b"]["c"] = value for path "a.b.c", creating the dicts on the way."""
    *parents, last = path.split(".")
    for key in parents:
        config = config.setdefault(key, {})
    config[last] = copy.deepcopy(value)


def merge(base: dict, layer: dict) -> dict:
    """`layer` over `base`, dicts merged key by key (as LightningCLI layers --config files)."""
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve(ablation: str, market: str, args: argparse.Namespace) -> dict:
    """The full config of one fit: the shipped yaml, the ablation, the market, the options."""
    config = yaml.safe_load(CONFIG.read_text())
    change = ABLATIONS[ablation]
    for path in change.config_files:
        config = merge(config, yaml.safe_load(path.read_text()))
    for path, value in change.overrides.items():
        set_path(config, path, value)
    for path, value in MARKETS[market].data.items():
        set_path(config, f"data.init_args.{path}", value)
    set_path(config, "data.init_args.seed", args.market_seed)
    if args.synthetic_days and not MARKETS[market].real:
        set_path(config, "data.init_args.synthetic.days", args.synthetic_days)
    if args.epochs:
        set_path(config, "trainer.max_epochs", args.epochs)
    config["trainer"] = {k: v for k, v in config["trainer"].items() if k not in NOT_TRAINING}
    # The policy the config's checkpoint keeps: the last epoch's (monitor: step) or the best
    # validation Sharpe's (monitor: val/sharpe), read back from BestValidationPolicy in `fit`.
    checkpoint = config.pop("checkpoint", {})
    kept = KEPT_POLICY.get((checkpoint.get("monitor"), checkpoint.get("mode", "min")))
    if kept is None:
        raise SystemExit(f"trading_ablations: no policy to keep for the config's {checkpoint}")
    config["kept_policy"] = kept
    return config


def config_hash(config: dict) -> str:
    text = json.dumps({"config": config, "version": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def instantiate(node: dict, **linked) -> Any:
    """{"class_path", "init_args"} → an instance; `linked` as LightningCLI's link_arguments."""
    module, _, name = node["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**copy.deepcopy(node.get("init_args", {})), **linked)


def build(config: dict) -> tuple[L.LightningDataModule, L.LightningModule]:
    datamodule = instantiate(config["data"])
    model = instantiate(
        config["model"],
        observation_shape=datamodule.observation_shape,
        num_actions=datamodule.num_actions,
        action_mode=datamodule.action_mode,
    )
    return datamodule, model


# ---------------------------------------------------------------------------- one fit
def test_record(metrics: dict[str, float], runs: list) -> dict:
    """The test figures a table reads, and the daily net log returns (one traded asset)."""
    [(_, positions, returns)] = runs  # every market here trades one asset
    record = {k: metrics[k] for k in ("sharpe", "sharpe_ci_low", "sharpe_ci_high")}
    record |= {k: metrics[k] for k in (*REFERENCES, "turnover", "exposure")}
    record["test_returns"] = [round(float(r), 8) for r in returns]
    return record


def fit(config: dict, seed: int) -> tuple[dict, dict[str, torch.Tensor]]:
    """Fit one configuration with `seed`; its record and the policy the config keeps."""
    L.seed_everything(seed, verbose=False)
    datamodule, model = build(config)
    datamodule.setup("fit")
    if seed != datamodule.seed:  # the market stays data.seed's; the episode draws follow `seed`
        datamodule.train_env.seed(seed)
        datamodule.train_env.reset()
    best = BestValidationPolicy()
    with tempfile.TemporaryDirectory() as root:
        trainer = quiet_trainer(**config["trainer"], default_root_dir=root, callbacks=[best])
        started = time.perf_counter()
        trainer.fit(model, datamodule)
        seconds = time.perf_counter() - started
    last = len(best.val_sharpes) - 1
    kept = (
        last if config["kept_policy"] == "last" else best.val_sharpes.index(max(best.val_sharpes))
    )
    if kept != last:
        model.policy.load_state_dict(best.state)
    state = {k: v.detach().clone() for k, v in model.policy.state_dict().items()}
    metrics, runs = model.backtester.evaluate(
        "test", [model.policy], [1.0], model.device, interval=True
    )
    record = {
        "fit_seconds": seconds,
        "epochs": len(best.val_sharpes),
        "val_sharpes": best.val_sharpes,
        "best_val_sharpe": max(best.val_sharpes),
        "best_epoch": best.val_sharpes.index(max(best.val_sharpes)),
        "kept_epoch": kept,
        "kept_val_sharpe": best.val_sharpes[kept],
        **test_record(metrics, runs),
    }
    return record, state


def ensemble(config: dict, members: list[tuple[dict, dict]]) -> dict:
    """The Sharpe-weighted ensemble of (record, policy state) members fitted with `config`."""
    datamodule, model = build(config)
    policies = []
    for _, state in members:
        policy = model.build_policy()
        policy.load_state_dict(state)
        policies.append(policy)
    weights = ensemble_weights([record["kept_val_sharpe"] for record, _ in members], "val_sharpe")
    backtester = Backtester(datamodule.trading_data(), model.backtest_config)
    metrics, runs = backtester.evaluate(
        "test", policies, weights, torch.device("cpu"), interval=True
    )
    return {"members": len(members), "weights": weights, **test_record(metrics, runs)}


# ---------------------------------------------------------------------------- the cache
def load_cache(refit: bool) -> dict:
    if refit or not CACHE.exists():
        return {}
    return json.loads(CACHE.read_text())


def save_cache(cache: dict) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    partial = CACHE.with_suffix(".json.partial")
    partial.write_text(json.dumps(cache) + "\n")
    partial.replace(CACHE)  # atomic: an interrupted write leaves the previous cache


def policy_path(key: str) -> Path:
    return POLICIES / (key.replace("/", "__") + ".pt")


def run_fits(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """Every (ablation, market, seed) fit, cached; then the ensembles. Returns (fits, ensembles)."""
    fitted = [a for a in args.ablations if a != ENSEMBLE]
    if ENSEMBLE in args.ablations and ENSEMBLE_OF not in fitted:
        fitted.insert(0, ENSEMBLE_OF)  # its members, and the row it is compared with
    cache = load_cache(args.refit)
    fits, ensembles = [], []
    total, done = len(fitted) * len(args.markets) * len(args.seeds), 0
    for market in args.markets:
        for ablation in fitted:
            config = resolve(ablation, market, args)
            digest = config_hash(config)
            members = []
            for seed in args.seeds:
                done += 1
                key = f"{ablation}/{market}/seed{seed}/{digest}"
                keep_policy = ablation == ENSEMBLE_OF and ENSEMBLE in args.ablations
                cached = cache.get(key)
                if cached and (not keep_policy or policy_path(key).exists()):
                    record, source = cached, "cached"
                else:
                    record, state = fit(config, seed)
                    if ablation == ENSEMBLE_OF:
                        POLICIES.mkdir(parents=True, exist_ok=True)
                        torch.save(state, policy_path(key))
                    cache[key] = record
                    save_cache(cache)
                    source = f"fit {record['fit_seconds']:.0f} s"
                fits.append({"ablation": ablation, "market": market, "seed": seed, **record})
                print(
                    f"[{done}/{total}] {ablation} on {market}, seed {seed}: test Sharpe "
                    f"{record['sharpe']:.2f} (best rule {record['rule_best_sharpe']:.2f}), kept "
                    f"epoch {record['kept_epoch'] + 1} of {record['epochs']} (best val "
                    f"{record['best_val_sharpe']:.2f} at epoch {record['best_epoch'] + 1}), "
                    f"{source}",
                    flush=True,
                )
                if keep_policy:
                    members.append((record, torch.load(policy_path(key), weights_only=True)))
            if members:
                record = ensemble(config, members)
                ensembles.append({"ablation": ENSEMBLE, "market": market, **record})
                print(
                    f"ensemble of {len(members)} on {market}: test Sharpe {record['sharpe']:.2f} "
                    f"(weights {', '.join(f'{w:.2f}' for w in record['weights'])})",
                    flush=True,
                )
    return fits, ensembles


# ---------------------------------------------------------------------------- the tables
def jitter(val_sharpes: list[float]) -> float:
    """Standard deviation of the epoch-to-epoch changes of the validation Sharpe."""
    steps = [b - a for a, b in zip(val_sharpes, val_sharpes[1:])]
    return statistics.stdev(steps) if len(steps) > 1 else float("nan")


def late_std(val_sharpes: list[float]) -> float:
    """Standard deviation of the validation Sharpe over the second half of the epochs."""
    late = val_sharpes[len(val_sharpes) // 2 :]
    return statistics.stdev(late) if len(late) > 1 else float("nan")


def mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.fmean(values) if values else float("nan")


def spread(values: list[float]) -> str:
    """mean ± std over seeds (just the value for one)."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def share(sharpe: float, best_rule: float) -> str:
    return f"{sharpe / best_rule:.0%}" if best_rule > 0 else "n/a"


def planted_table(fits: list[dict], ensembles: list[dict], args) -> list[dict]:
    """Rows = ablations; per planted market, test Sharpe over seeds and % of the best rule."""
    markets = [m for m in args.markets if not MARKETS[m].real]
    rows = []
    for ablation in args.ablations:
        row, shares = {"ablation": ablation}, []
        for market in markets:
            runs = [f for f in fits if f["ablation"] == ablation and f["market"] == market]
            if ablation == ENSEMBLE:
                [single] = [e for e in ensembles if e["market"] == market]
                base = [f["sharpe"] for f in fits if f["ablation"] == ENSEMBLE_OF and f["market"] == market]  # fmt: skip
                sharpe, cell = single["sharpe"], f"{single['sharpe']:.2f} (single {mean(base):.2f})"
                best_rule = single["rule_best_sharpe"]
            else:
                sharpes = [f["sharpe"] for f in runs]
                sharpe, cell = mean(sharpes), spread(sharpes)
                best_rule = mean([f["rule_best_sharpe"] for f in runs])
            if MARKETS[market].planted_edge:
                cell += f" ({share(sharpe, best_rule)})"
                if best_rule > 0:
                    shares.append(sharpe / best_rule)
            row[market] = cell
        row["edge markets: % of best rule"] = f"{mean(shares):.0%}" if shares else "n/a"
        runs = [f for f in fits if f["ablation"] == ablation and f["market"] in markets]
        row["fit s"] = mean([f["fit_seconds"] for f in runs]) if runs else ""
        rows.append(row)
    for key, label in REFERENCES.items():
        row = {"ablation": f"*{label}*"}
        for market in markets:
            runs = [f for f in fits if f["market"] == market and f["ablation"] == ENSEMBLE_OF]
            runs = runs or [f for f in fits if f["market"] == market]
            row[market] = f"{mean([f[key] for f in runs]):.2f}"
        rows.append(row)
    return rows


def consistency_table(fits: list[dict], args) -> list[dict]:
    """Per ablation: how much the validation Sharpe moves from epoch to epoch."""
    rows = []
    for ablation in [a for a in args.ablations if a != ENSEMBLE]:
        row = {"ablation": ablation}
        for kind, real in (("planted", False), ("real", True)):
            runs = [
                f for f in fits if f["ablation"] == ablation and MARKETS[f["market"]].real == real
            ]
            if not runs:
                continue
            row[f"{kind}: val jitter"] = mean([jitter(f["val_sharpes"]) for f in runs])
            row[f"{kind}: late std"] = mean([late_std(f["val_sharpes"]) for f in runs])
            row[f"{kind}: best epoch / epochs"] = (
                f"{mean([f['best_epoch'] + 1 for f in runs]):.1f} / "
                f"{mean([f['epochs'] for f in runs]):.0f}"
            )
        row["fits"] = len([f for f in fits if f["ablation"] == ablation])
        rows.append(row)
    return rows


def portfolio(returns: list[list[float]]) -> torch.Tensor:
    """Daily net log returns of equal capital in each strategy, rebalanced daily."""
    r = torch.tensor(returns, dtype=torch.float64)  # (strategies, days)
    return r.exp().mean(0).log()


def sharpe_of(returns: torch.Tensor) -> float:
    # performance() reads positions only for turnover and exposure, not for the Sharpe.
    return performance(returns, torch.zeros_like(returns))["sharpe"]


def real_table(fits: list[dict], ensembles: list[dict], args) -> tuple[list[dict], list[str]]:
    """Per asset and ablation: the portfolio of its fits, its interval and its DSR; and one
    line per asset naming the best configuration and the best single fit, deflated."""
    rows, notes = [], []
    assets = dict.fromkeys(MARKETS[m].asset for m in args.markets if MARKETS[m].real)
    for asset in assets:
        markets = [m for m in args.markets if MARKETS[m].asset == asset]
        members: dict[str, list[dict]] = {}
        for ablation in args.ablations:
            pool = ensembles if ablation == ENSEMBLE else fits
            runs = [f for f in pool if f["ablation"] == ablation and f["market"] in markets]
            if runs:
                members[ablation] = runs
        if len({len(f["test_returns"]) for runs in members.values() for f in runs}) != 1:
            raise RuntimeError(f"{asset}: the folds' test splits differ; see splits.py")
        returns = {a: portfolio([f["test_returns"] for f in runs]) for a, runs in members.items()}
        trial_sharpes = {a: sharpe_of(r) for a, r in returns.items()}
        for ablation, runs in members.items():
            low, high = sharpe_interval(returns[ablation])
            by_fold = {}
            for f in runs:
                by_fold.setdefault(MARKETS[f["market"]].fold, []).append(f["sharpe"])
            rows.append(
                {
                    "asset": asset,
                    "ablation": ablation,
                    "fits": len(runs),
                    "single fits": spread([f["sharpe"] for f in runs]),
                    "by fold": ", ".join(f"wf{k} {mean(v):.2f}" for k, v in by_fold.items()),
                    "portfolio Sharpe": trial_sharpes[ablation],
                    "95% interval": f"{low:.2f} to {high:.2f}",
                    "DSR": deflated_sharpe_ratio(returns[ablation], list(trial_sharpes.values())),
                }
            )
        # The baselines do not depend on the agent: one value per fold.
        per_fold = {f["market"]: f for f in fits if f["market"] in markets}.values()
        for key, label in REFERENCES.items():
            if key != "random_sharpe":
                values = [f[key] for f in per_fold]
                rows.append(
                    {"asset": asset, "ablation": f"*{label}*", "single fits": spread(values)}
                )
        best = max(trial_sharpes, key=trial_sharpes.get)
        every = [f for runs in members.values() for f in runs if f["ablation"] != ENSEMBLE]
        lucky = max(every, key=lambda f: f["sharpe"])
        lucky_dsr = deflated_sharpe_ratio(
            torch.tensor(lucky["test_returns"]), [f["sharpe"] for f in every]
        )
        notes.append(
            f"{asset}: best configuration {best} (portfolio Sharpe {trial_sharpes[best]:.2f}, "
            f"DSR {deflated_sharpe_ratio(returns[best], list(trial_sharpes.values())):.2f} over "
            f"{len(trial_sharpes)} configurations); best single fit {lucky['ablation']} on "
            f"{lucky['market']} seed {lucky['seed']} (Sharpe {lucky['sharpe']:.2f}, DSR "
            f"{lucky_dsr:.2f} over {len(every)} fits)."
        )
    return rows, notes


# ---------------------------------------------------------------------------- main
def quiet_lightning() -> None:
    """Lightning's per-fit banners and data-loader advice would bury the progress lines."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # The trading data "loaders" only pace iterations (datamodule.py): no workers to advise on.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*`IterableDataset` has `__len__` defined.*")
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ablations", nargs="+", choices=ALL_ABLATIONS, help="default: all")
    parser.add_argument("--markets", nargs="+", choices=list(MARKETS), help="default: " + " ".join(DEFAULT_MARKETS))  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, help="default: 0 1 2")
    parser.add_argument("--epochs", type=int, help="override trainer.max_epochs")
    parser.add_argument("--synthetic-days", type=int, help="days of each planted market")
    parser.add_argument("--market-seed", type=int, default=0, help="data.seed: the planted markets")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--refit", action="store_true", help="ignore cached fits")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 2 ablations (+ ensemble) x 2 markets x 1 seed, 2 epochs"
    )  # fmt: skip
    args = parser.parse_args()
    defaults = QUICK if args.quick else dict(ablations=ALL_ABLATIONS, markets=DEFAULT_MARKETS, seeds=[0, 1, 2])  # fmt: skip
    for key, value in defaults.items():
        if getattr(args, key) is None:  # an explicit option wins over --quick
            setattr(args, key, value)
    torch.set_num_threads(args.threads)
    quiet_lightning()

    started = time.perf_counter()
    fits, ensembles = run_fits(args)
    info = machine()
    caption = f"{info['date']}, {cpu_line()}, load {info['load_average']}, {args.threads} thread(s)"
    tables = {}
    if any(not MARKETS[m].real for m in args.markets):
        tables["planted"] = planted_table(fits, ensembles, args)
        print(
            f"\n(1) Planted family: test Sharpe after 5 bp costs, mean ± std over seeds "
            f"{args.seeds} (% of the best rule on the same days); {caption}"
        )
        print(markdown_table(tables["planted"]))
    tables["consistency"] = consistency_table(fits, args)
    print(
        "\n(2) Training consistency: std of the validation Sharpe's epoch-to-epoch changes "
        f"(val jitter) and over the second half of training (late std); {caption}"
    )
    print(markdown_table(tables["consistency"]))
    notes = []
    if any(MARKETS[m].real for m in args.markets):
        tables["real"], notes = real_table(fits, ensembles, args)
        print(
            "\n(3) Real data, test split: each ablation's equal-capital portfolio of its fits "
            f"(folds x seeds), block-bootstrap 95% interval, deflated Sharpe ratio; {caption}"
        )
        print(markdown_table(tables["real"]))
        print("\n".join(notes))
    print(f"\n{len(fits)} fits, {time.perf_counter() - started:.0f} s in all")
    path = write_results(
        "trading_ablations",
        {
            "machine": info,
            "args": vars(args),
            "ablations": {k: vars(v) for k, v in ABLATIONS.items()},
            "markets": {m: vars(MARKETS[m]) for m in args.markets},
            "tables": tables,
            "notes": notes,
            "fits": fits,
            "ensembles": ensembles,
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
