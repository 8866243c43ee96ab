"""casebook's trading stack against Stable-Baselines3 PPO: same environment, same network, this CPU.

    .venv/bin/python -m bench.trading_vs_sb3            # about 5 minutes
    .venv/bin/python -m bench.trading_vs_sb3 --quick    # under a minute
    .venv/bin/python -m bench.trading_vs_sb3 --source synthetic

Needs stable-baselines3 (not a casebook dependency):
    .venv/bin/pip install -c constraints.txt stable-baselines3

Three measurements, each side by side in one process, repeats interleaved (the order alternates):

(a) raw environment steps/s with random actions: casebook's `BatchedTradingEnv` stepping N
    episodes as one tensor program, against N `TradingGymEnv` adapters in an SB3 VecEnv.
(b) end-to-end PPO training throughput (env steps/s, rollouts + updates) for the same number of
    env steps: `lightning.Trainer.fit(PPOTrader, MarketDataModule)` (no logger, no checkpoints,
    no validation) against `stable_baselines3.PPO.learn` with matched hyper-parameters.
(c) test-split Sharpe of each trained policy, deterministic, through the same backtest
    (`MarketDataModule.backtest_data("test")` + `simulate` + `performance`).

The network is the same: SB3's features extractor is casebook's `TradingPolicy` trunk and shared
body; SB3 adds its own action and value heads of the same shapes (see `CasebookFeatures`).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import lightning as L
import numpy as np
import torch
from torch import nn

from bench.common import load_average, machine, markdown_table, quiet_trainer, write_results
from datamodules.trading import MarketDataModule, simulate
from datamodules.trading.env import positions_from_actions
from lightning_modules.trading import PPOTrader, TradingPolicy, performance

try:
    import gymnasium as gym
    import stable_baselines3
    from stable_baselines3 import PPO
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv
except ImportError as error:  # pragma: no cover - a benchmark-only dependency
    raise SystemExit(
        f"{error}; install it with: .venv/bin/pip install -c constraints.txt stable-baselines3"
    ) from None

# configs/ppo_trader.yaml, the recipe users run on a CPU; both sides get exactly these.
DATA = dict(window=32, episode_length=128, num_envs=32, action_mode="discrete", cost_bps=5.0)
NETWORK = dict(width=16, depth=6, norm="group", coord_channels=True, hidden=64)
PPO_HP = dict(
    rollout_steps=32,  # SB3 n_steps
    update_epochs=4,  # SB3 n_epochs
    num_minibatches=4,  # SB3 batch_size = num_envs * rollout_steps / num_minibatches
    lr=1e-3,  # annealed linearly to 0 on both sides
    gamma=0.95,
    gae_lambda=0.95,
    clip_coef=0.2,  # SB3 clip_range and clip_range_vf
    entropy_coef=0.01,
    value_coef=0.5,  # casebook's value loss is 0.5 * MSE: SB3 vf_coef = 0.25 gives the same weight
    max_grad_norm=0.5,
    reward_scale=100.0,  # rewards in percent; SB3's envs get the same scaling by a wrapper
    aux_coef=0.0,  # SB3 has no auxiliary head: switched off so both optimize the same loss
)


# ----------------------------------------------------------------------------- SB3 side
class CasebookFeatures(BaseFeaturesExtractor):
    """casebook's `TradingPolicy` up to its shared body, as an SB3 features extractor.

    features = body(concat(trunk(market), position)), `hidden` wide. With net_arch=[] SB3 puts its
    action_net (hidden -> actions) and value_net (hidden -> 1) straight on top: the same layers
    as casebook's policy_head and value_head, with the same orthogonal gains (SB3's ortho_init).
    casebook's own heads are dropped here; only its auxiliary head (hidden -> 1) has no SB3 twin.
    """

    def __init__(self, observation_space: gym.spaces.Dict, num_actions: int, **network) -> None:
        policy = TradingPolicy(tuple(observation_space["market"].shape), num_actions, **network)
        super().__init__(observation_space, features_dim=policy.body[-2].out_features)
        policy.policy_head = policy.value_head = policy.aux_head = nn.Identity()
        self.policy = policy

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        trunk = self.policy.trunk(observations["market"])
        return self.policy.body(torch.cat([trunk, observations["position"]], dim=-1))


def sb3_vec_env(datamodule: MarketDataModule, num_envs: int, seed: int, kind: str):
    """num_envs one-episode Gymnasium adapters over the training split, rewards scaled as casebook's."""
    scale = PPO_HP["reward_scale"]

    def make(rank: int):
        def build():
            env = datamodule.make_gym_env("train", seed=seed + rank)
            return gym.wrappers.TransformReward(env, lambda r: scale * r)

        return build

    vec_env_class = SubprocVecEnv if kind == "subproc" else DummyVecEnv
    return vec_env_class([make(rank) for rank in range(num_envs)])


def sb3_model(datamodule: MarketDataModule, iterations: int, seed: int) -> PPO:
    """PPO with casebook's hyper-parameters on a DummyVecEnv (SB3's advice for cheap envs; a
    SubprocVecEnv of 32 processes on 2 cores would only add pickling)."""
    hp = PPO_HP
    env = sb3_vec_env(datamodule, DATA["num_envs"], seed, "dummy")
    batch = DATA["num_envs"] * hp["rollout_steps"]
    # SB3 reads progress after the rollout (1 - (k+1)/K at iteration k); casebook before it
    # (1 - k/K). The 1/K shift gives both the same learning rate at every iteration.
    shift = 1.0 / iterations
    return PPO(
        "MultiInputPolicy",
        env,
        learning_rate=lambda progress: hp["lr"] * min(1.0, progress + shift),
        n_steps=hp["rollout_steps"],
        batch_size=batch // hp["num_minibatches"],
        n_epochs=hp["update_epochs"],
        gamma=hp["gamma"],
        gae_lambda=hp["gae_lambda"],
        clip_range=hp["clip_coef"],
        clip_range_vf=hp["clip_coef"],
        normalize_advantage=True,
        ent_coef=hp["entropy_coef"],
        vf_coef=hp["value_coef"] * 0.5,
        max_grad_norm=hp["max_grad_norm"],
        policy_kwargs=dict(
            features_extractor_class=CasebookFeatures,
            features_extractor_kwargs=dict(num_actions=datamodule.num_actions, **NETWORK),
            net_arch=[],
            ortho_init=True,
            optimizer_kwargs=dict(eps=1e-5),  # casebook's AdamW eps (weight decay 0)
        ),
        seed=seed,
        device="cpu",
        verbose=0,
    )


def sb3_positions(model: PPO, market: torch.Tensor, action_mode: str) -> torch.Tensor:
    """SB3's deterministic policy day by day, fed the position it holds (flat on day one)."""
    held = np.zeros((1, 1), dtype=np.float32)
    positions = []
    for day in market.numpy():
        action, _ = model.predict({"market": day[None], "position": held}, deterministic=True)
        position = positions_from_actions(torch.as_tensor(action), action_mode)
        held = position.numpy().reshape(1, 1).astype(np.float32)
        positions.append(position)
    return torch.cat(positions)


# ----------------------------------------------------------------------------- casebook side
def casebook_model(datamodule: MarketDataModule, seed: int) -> PPOTrader:
    L.seed_everything(seed, verbose=False)
    return PPOTrader(
        observation_shape=datamodule.observation_shape,
        num_actions=datamodule.num_actions,
        action_mode=datamodule.action_mode,
        algorithm="ppo",
        anneal_lr=True,
        random_baselines=0,
        **NETWORK,
        **PPO_HP,
    )


def casebook_fit(
    model: PPOTrader, datamodule: MarketDataModule, iterations: int, seed: int
) -> None:
    """`Trainer.fit`: `iterations` rollout+update steps in one epoch; no validation, logger or
    checkpoints (SB3's learn() does none of these either)."""
    datamodule.iterations_per_epoch = iterations
    datamodule.seed = seed
    datamodule.train_env = None  # setup("fit") builds a fresh one from the seed
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)


# ----------------------------------------------------------------------------- measurements
def env_step_rates(
    datamodule: MarketDataModule, sizes: list[int], repeats: int, seconds: float, kind: str
) -> tuple[list[dict], list[dict]]:
    """(a): random-action env steps/s, casebook and the SB3 VecEnv alternated within each repeat.

    Each timed block steps one side for `seconds` of wall time, so both see the same slice of the
    machine's load."""
    rows, raw = [], []
    num_actions = datamodule.num_actions
    for num_envs in sizes:
        casebook_env = datamodule.make_env("train", num_envs=num_envs, seed=0)
        vec_env = sb3_vec_env(datamodule, num_envs, 0, kind)
        vec_env.reset()
        generator = torch.Generator().manual_seed(0)
        rng = np.random.default_rng(0)

        def casebook_step(env=casebook_env, n=num_envs, generator=generator) -> None:
            env.step(torch.randint(num_actions, (n,), generator=generator))

        def sb3_step(env=vec_env, n=num_envs, rng=rng) -> None:
            env.step(rng.integers(num_actions, size=n))

        def rate(step, n=num_envs, budget=seconds) -> float:
            calls, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < budget:
                step()
                calls += 1
            return calls * n / elapsed

        rate(casebook_step, budget=0.1), rate(sb3_step, budget=0.1)  # warm-up
        rates = {casebook_step: [], sb3_step: []}
        loads = []
        for r in range(repeats):
            for step in (casebook_step, sb3_step) if r % 2 == 0 else (sb3_step, casebook_step):
                rates[step].append(rate(step))
            loads.append(load_average()[0])
        vec_env.close()
        ratios = [c / s for c, s in zip(rates[casebook_step], rates[sb3_step])]
        rows.append(
            {
                "N envs": num_envs,
                "casebook steps/s": statistics.median(rates[casebook_step]),
                f"SB3 {kind} steps/s": statistics.median(rates[sb3_step]),
                "ratio casebook/SB3": statistics.median(ratios),
                "ratio min-max": f"{min(ratios):.1f}-{max(ratios):.1f}",
                "load (1 min)": f"{min(loads):.1f}-{max(loads):.1f}",
            }
        )
        raw.append(
            dict(num_envs=num_envs, casebook=rates[casebook_step], sb3=rates[sb3_step], load=loads)
        )
        print(markdown_table(rows[-1:]), flush=True)
    return rows, raw


def backtest_sharpe(datamodule: MarketDataModule, positions_of) -> float:
    """Mean test-split Sharpe over assets of a deterministic policy (positions_of(market))."""
    sharpes = []
    for asset in datamodule.backtest_data("test"):
        positions = positions_of(asset.market)
        returns = simulate(positions, asset, datamodule.cost_bps, datamodule.execution)
        sharpes.append(performance(returns, positions)["sharpe"])
    return float(np.mean(sharpes))


def time_phases(obj, phases: dict[str, str]) -> dict[str, float]:
    """Wrap `obj`'s methods {method: phase} so the seconds spent in each add up in the result."""
    spent = dict.fromkeys(phases.values(), 0.0)

    def timed(original, phase: str):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[phase] += time.perf_counter() - start

        return wrapper

    for method, phase in phases.items():
        setattr(obj, method, timed(getattr(obj, method), phase))
    return spent


def train_and_score(
    datamodule: MarketDataModule, seeds: list[int], iterations: int
) -> tuple[list[dict], list[dict], dict]:
    """(b) and (c): one training run per seed and side, the side going first alternating; then
    the deterministic test backtest of both."""
    steps = iterations * DATA["num_envs"] * PPO_HP["rollout_steps"]
    throughput, sharpe = [], []
    for i, seed in enumerate(seeds):
        cb_model = casebook_model(datamodule, seed)
        sb3 = sb3_model(datamodule, iterations, seed)
        # collect_rollout: env steps + policy forward; update: PPO epochs. SB3's collect_rollouts
        # also computes GAE (casebook's GAE, ~1 ms, falls in neither).
        phases = {
            "casebook": time_phases(cb_model, {"collect_rollout": "rollout", "update": "update"}),
            "SB3": time_phases(sb3, {"collect_rollouts": "rollout", "train": "update"}),
        }
        runs = {
            "casebook": lambda m=cb_model, s=seed: casebook_fit(m, datamodule, iterations, s),
            "SB3": lambda m=sb3: m.learn(total_timesteps=steps),
        }
        seconds, cpu_seconds, loads = {}, {}, []
        for side in ("casebook", "SB3") if i % 2 == 0 else ("SB3", "casebook"):
            loads.append(load_average()[0])
            wall, cpu = time.perf_counter(), time.process_time()
            runs[side]()
            seconds[side] = time.perf_counter() - wall
            cpu_seconds[side] = time.process_time() - cpu
        loads.append(load_average()[0])
        assert sb3.num_timesteps == steps, (sb3.num_timesteps, steps)
        row = {"seed": seed, "env steps": steps}
        for side in ("casebook", "SB3"):
            row[f"{side} steps/s"] = steps / seconds[side]
            row[f"{side} s (rollout + update)"] = (
                f"{seconds[side]:.1f} ({phases[side]['rollout']:.1f} + "
                f"{phases[side]['update']:.1f})"
            )
        row["ratio"] = seconds["SB3"] / seconds["casebook"]
        # Process CPU time: steadier than wall time while other workers load the machine.
        row["ratio (CPU time)"] = cpu_seconds["SB3"] / cpu_seconds["casebook"]
        row["rollout ratio"] = phases["SB3"]["rollout"] / phases["casebook"]["rollout"]
        row["update ratio"] = phases["SB3"]["update"] / phases["casebook"]["update"]
        row["load (1 min)"] = f"{min(loads):.1f}-{max(loads):.1f}"
        throughput.append(row)
        print(markdown_table([row]), flush=True)
        sharpe.append(
            {
                "seed": seed,
                "env steps": steps,
                "casebook test Sharpe": backtest_sharpe(datamodule, cb_model.backtest_positions),
                "SB3 test Sharpe": backtest_sharpe(
                    datamodule,
                    lambda market, m=sb3: sb3_positions(m, market, datamodule.action_mode),
                ),
            }
        )
    extra = {
        "buy_and_hold_test_sharpe": backtest_sharpe(
            datamodule, lambda market: torch.ones(len(market))
        ),
        "parameters": {
            "casebook": sum(p.numel() for p in cb_model.policy.parameters()),
            "SB3": sum(p.numel() for p in sb3.policy.parameters()),
        },
    }
    return throughput, sharpe, extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="under a minute: fewer sizes, steps, seeds"
    )
    parser.add_argument("--source", default="sp500", help="sp500 | nasdaq | synthetic")
    parser.add_argument(
        "--iterations", type=int, help="PPO iterations per run (1024 env steps each)"
    )
    parser.add_argument("--seeds", type=int, help="training runs per side")
    parser.add_argument("--sizes", type=int, nargs="+", help="N of the env-step measurement")
    parser.add_argument("--repeats", type=int, help="interleaved repeats of each env-step size")
    parser.add_argument("--block-seconds", type=float, help="wall time of one env-step block")
    parser.add_argument(
        "--vec-env",
        choices=("dummy", "subproc"),
        default="dummy",
        help="SB3 VecEnv of measurement (a); subproc starts N processes, each importing torch",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for both sides (1: other workers share these cores)",
    )
    args = parser.parse_args()
    sizes = args.sizes or ([32] if args.quick else [1, 32, 256])
    repeats = args.repeats or (3 if args.quick else 5)
    block_seconds = args.block_seconds or (0.3 if args.quick else 0.5)
    # Several shorter runs rather than one long one: more alternations, a steadier median.
    iterations = args.iterations or (2 if args.quick else 8)
    seeds = list(range(args.seeds or (1 if args.quick else 3)))

    torch.set_num_threads(args.threads)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", module="stable_baselines3")

    datamodule = MarketDataModule(source=args.source, **DATA)
    datamodule.prepare_table()
    info = machine()
    info["stable_baselines3"] = stable_baselines3.__version__
    print(f"# trading_vs_sb3  source={args.source}  {info}\n", flush=True)

    print("## (a) raw environment steps/s, random actions\n", flush=True)
    env_rows, env_raw = env_step_rates(datamodule, sizes, repeats, block_seconds, args.vec_env)
    steps = iterations * DATA["num_envs"] * PPO_HP["rollout_steps"]
    print(
        f"\n## (b, c) PPO training, {steps} env steps per run, {len(seeds)} seed(s)\n", flush=True
    )
    throughput, sharpe, extra = train_and_score(datamodule, seeds, iterations)
    info["load_average_end"] = load_average()
    summary = {
        "casebook train steps/s": statistics.median(r["casebook steps/s"] for r in throughput),
        "SB3 train steps/s": statistics.median(r["SB3 steps/s"] for r in throughput),
        "train ratio": statistics.median(r["ratio"] for r in throughput),
        "train ratio (CPU time)": statistics.median(r["ratio (CPU time)"] for r in throughput),
        "rollout ratio": statistics.median(r["rollout ratio"] for r in throughput),
        "casebook test Sharpe": float(np.mean([r["casebook test Sharpe"] for r in sharpe])),
        "SB3 test Sharpe": float(np.mean([r["SB3 test Sharpe"] for r in sharpe])),
        "buy-and-hold test Sharpe": extra["buy_and_hold_test_sharpe"],
    }
    at_num_envs = next((r for r in env_rows if r["N envs"] == DATA["num_envs"]), env_rows[-1])
    env_ratio = at_num_envs["ratio casebook/SB3"]

    print("\n## Summary\n")
    print(
        f"source {args.source}; {info['date']}; load average {info['load_average']} at start, "
        f"{info['load_average_end']} at end; {info['cpu_count']} CPUs, torch threads "
        f"{torch.get_num_threads()}; SB3 {info['stable_baselines3']}; policy parameters "
        f"{extra['parameters']}\n"
    )
    print("(a) environment steps/s, random actions (medians of interleaved repeats)\n")
    print(markdown_table(env_rows))
    print(f"\n(b) PPO training, {steps} env steps per run (seconds: total (rollout + update))\n")
    print(markdown_table(throughput))
    print("\n(c) deterministic test-split Sharpe after training\n")
    print(markdown_table(sharpe))
    print()
    print(markdown_table([summary]))
    print(
        f"\nenv steps/s at N={at_num_envs['N envs']}: casebook/SB3 = {env_ratio:.1f}x "
        f"({'meets' if env_ratio >= 20 else 'misses'} the 20x target); end-to-end training "
        f"{summary['train ratio']:.2f}x"
    )
    name = "trading_vs_sb3" + ("" if args.source == "sp500" else f"_{args.source}")
    path = write_results(
        name + ("_quick" if args.quick else ""),
        {
            "machine": info,
            "arguments": vars(args),
            "config": {"data": DATA, "network": NETWORK, "ppo": PPO_HP, "iterations": iterations},
            "env_steps": env_rows,
            "env_steps_raw": env_raw,
            "training": throughput,
            "sharpe": sharpe,
            "summary": summary,
            **extra,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
