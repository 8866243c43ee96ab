"""PPOTrader: PPO (and A2C, the synchronous A3C it replaced) on the batched trading environment.

    casebook fit  --config configs/ppo_trader.yaml
    casebook fit  --config configs/ppo_trader.yaml --config configs/a2c_trader.yaml
    casebook test --config configs/ppo_trader.yaml --ckpt_path last

One training step = one iteration: collect ``rollout_steps`` steps from every environment of
``datamodule.train_env`` with the current policy, compute GAE, then update (PPO: several epochs of
clipped-surrogate minibatch steps; A2C: one plain policy-gradient step on the whole rollout).
Manual optimization, because one batch holds many optimizer steps.

Every validation epoch (and ``casebook test``) backtests the deterministic policy over the whole
split and logs the trader's figures for the agent and for buy-and-hold.

PPO details follow Schulman et al. 2017 and "The 37 implementation details of PPO" (Huang et al.
2022): GAE, per-minibatch advantage normalization, clipped value loss, global gradient clipping at
0.5, orthogonal init, learning-rate annealing, optional KL early stop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor

from callbacks import log_figure, log_table
from datamodules.errors import DataError
from datamodules.trading import BacktestAsset, simulate
from lightning_modules.common import Init, Norm, Schedule, decay_groups, lr_multiplier
from lightning_modules.trading.backtest import (
    equity_figure,
    performance,
    trades,
    worst_trades_figure,
)
from lightning_modules.trading.policy import TradingPolicy

# Constructor options passed through to TradingPolicy unchanged.
POLICY_OPTIONS = (
    "width",
    "depth",
    "norm",
    "coord_channels",
    "position_embedding",
    "dropout",
    "drop_path",
    "squeeze_excitation",
    "hidden",
    "init",
)
REPORTED = (
    "sharpe",
    "total_return",
    "annual_return",
    "sortino",
    "max_drawdown",
    "turnover",
    "hit_rate",
    "exposure",
)


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    next_value: Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016).

    rewards, values, dones: (steps, envs); dones[t] says the episode ended with step t, so
    nothing after it is bootstrapped. next_value: (envs,) value of the observation after the last
    step. Returns (advantages, returns), both (steps, envs).
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        following = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        alive = 1.0 - dones[t].float()
        delta = rewards[t] + gamma * following * alive - values[t]
        last = delta + gamma * gae_lambda * alive * last
        advantages[t] = last
    return advantages, advantages + values


@dataclass
class Rollout:
    market: Tensor  # (steps, envs, channels, window, features)
    position: Tensor  # (steps, envs)
    action: Tensor  # (steps, envs)
    logprob: Tensor
    value: Tensor
    reward: Tensor
    done: Tensor
    aux_target: Tensor
    episode_log_returns: list[float]


class PPOTrader(L.LightningModule):
    """A trading agent trained by PPO or A2C on ``MarketDataModule``'s environments."""

    def __init__(
        self,
        observation_shape: tuple[int, int, int] = (3, 32, 8),
        num_actions: int = 3,
        action_mode: str = "discrete",
        algorithm: Literal["ppo", "a2c"] = "ppo",
        width: int = 32,
        depth: int = 6,
        norm: Norm = "group",
        coord_channels: bool = True,
        position_embedding: bool = False,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        squeeze_excitation: bool = False,
        hidden: int = 64,
        init: Init = "orthogonal",
        rollout_steps: int = 64,
        gamma: float = 0.95,
        gae_lambda: float = 0.95,
        reward_scale: float = 100.0,
        update_epochs: int = 4,
        num_minibatches: int = 4,
        clip_coef: float = 0.2,
        clip_value_loss: bool = True,
        value_coef: float = 0.5,
        entropy_coef: float = 0.01,
        aux_coef: float = 0.1,
        target_kl: float | None = None,
        normalize_advantages: bool = True,
        max_grad_norm: float = 0.5,
        lr: float = 3e-4,
        anneal_lr: bool = True,
        lr_schedule: Schedule = "linear",
        warmup_steps: int = 0,
        weight_decay: float = 0.0,
        ensemble_checkpoints: list[str] | None = None,
        ensemble_weighting: Literal["uniform", "val_sharpe"] = "uniform",
        random_baselines: int = 32,
        worst_trades: int = 10,
    ) -> None:
        """
        Args:
            observation_shape: (channels, window, features) of the market tensor (linked from the data).
            num_actions: 3 (short/flat/long), 2 (flat/long) or 1 (continuous; linked from the data).
            action_mode: discrete, long_only or continuous (linked from the data).
            algorithm: ppo (clipped surrogate, several epochs) or a2c (one policy-gradient step per rollout).
            width: channels of the residual trunk.
            depth: residual blocks in the trunk.
            norm: group, layer, batch (the ablation) or none.
            coord_channels: add CoordConv maps along time and features.
            position_embedding: add a learned (channels, window, features) map to the input.
            dropout: dropout inside residual blocks.
            drop_path: stochastic-depth rate of the last block (linearly increasing with depth).
            squeeze_excitation: squeeze-and-excitation at the end of each block.
            hidden: width of the heads' shared MLP.
            init: orthogonal (PPO's), xavier, kaiming or default (PyTorch's) for the hidden layers.
            rollout_steps: steps per environment per iteration.
            gamma: discount factor.
            gae_lambda: GAE lambda (1.0 = Monte Carlo returns, A2C's usual choice).
            reward_scale: rewards (daily log returns) are multiplied by this for training (100 = percent).
            update_epochs: PPO epochs over each rollout (A2C: 1).
            num_minibatches: minibatches per PPO epoch (A2C: 1).
            clip_coef: PPO ratio clip, also the value clip.
            clip_value_loss: clip the value update around the rollout's values (PPO only).
            value_coef: weight of the value loss.
            entropy_coef: weight of the entropy bonus.
            aux_coef: weight of the auxiliary loss (predicting the next day's market return, in percent).
            target_kl: stop the update epochs early once the approximate KL exceeds this (None: never).
            normalize_advantages: normalize advantages per minibatch.
            max_grad_norm: global gradient-norm clip (0 disables).
            lr: learning rate (Adam for PPO, RMSprop for A2C).
            anneal_lr: follow `lr_schedule` over training, per iteration (False: constant `lr`).
            lr_schedule: constant, linear (PPO's annealing to 0), cosine, flat_cosine or one_cycle.
            warmup_steps: iterations of linear learning-rate warm-up before the schedule.
            weight_decay: decoupled weight decay (AdamW) of weight matrices and kernels, for PPO.
            ensemble_checkpoints: test an ensemble of these checkpoints (averaged action probabilities)
                instead of this model.
            ensemble_weighting: uniform, or val_sharpe (weights ∝ each checkpoint's positive validation Sharpe).
            random_baselines: random policies backtested alongside, for the val/random_sharpe row.
            worst_trades: error analysis after test: this many worst trades per asset in reports/.
        """
        super().__init__()
        if algorithm not in ("ppo", "a2c"):
            raise ValueError(f"algorithm must be ppo or a2c, not {algorithm!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.policy = TradingPolicy(**self._policy_kwargs())
        self.last_val_sharpe: float | None = None
        self._baseline_cache: dict[tuple, dict[str, float]] = {}

    # ------------------------------------------------------------------ training
    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.hparams.algorithm == "a2c":  # as in A3C/A2C and Stable-Baselines3's A2C
            return torch.optim.RMSprop(self.parameters(), lr=self.hparams.lr, alpha=0.99, eps=1e-5)
        groups = decay_groups(self.parameters(), self.hparams.weight_decay)
        return torch.optim.AdamW(groups, lr=self.hparams.lr, eps=1e-5)

    def on_fit_start(self) -> None:
        self.trainer.datamodule.train_env.to(self.device)

    @property
    def _env(self):
        return self.trainer.datamodule.train_env

    @torch.no_grad()
    def collect_rollout(self, env) -> tuple[Rollout, Tensor]:
        """``rollout_steps`` steps of every environment with the current (sampling) policy."""
        hp = self.hparams
        was_training = self.policy.training
        self.policy.eval()  # dropout / stochastic depth off while acting: logprobs stay comparable
        market, position = env.observe()
        steps = []
        finished: list[float] = []
        for _ in range(hp.rollout_steps):
            dist, value, _ = self.policy(market, position)
            action = dist.sample()
            next_market, next_position, reward, done, info = env.step(action)
            reward = reward * hp.reward_scale
            if done.any():
                # Episodes end by a time limit: bootstrap from the last observation (truncation, not termination).
                _, final_value, _ = self.policy(info["final_market"], info["final_position"])
                reward = reward + hp.gamma * torch.where(
                    done, final_value, torch.zeros_like(final_value)
                )
                finished.extend(info["episode_log_return"][done].tolist())
            aux_target = info["market_log_return"] * 100.0
            steps.append(
                (market, position, action, dist.log_prob(action), value, reward, done, aux_target)
            )
            market, position = next_market, next_position
        next_value = self.policy(market, position)[1]
        self.policy.train(was_training)
        stacked = [torch.stack(column) for column in zip(*steps)]
        return Rollout(*stacked, episode_log_returns=finished), next_value

    def training_step(self, batch: Tensor, batch_idx: int) -> None:
        hp = self.hparams
        optimizer = self.optimizers()
        if hp.anneal_lr and self.trainer.max_epochs and self.trainer.max_epochs > 0:
            # Manual optimization: Lightning steps no scheduler, so set the rate per iteration.
            total = self.trainer.max_epochs * self.trainer.num_training_batches
            iteration = self.current_epoch * self.trainer.num_training_batches + batch_idx
            factor = lr_multiplier(hp.lr_schedule, iteration, total, hp.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = hp.lr * factor

        rollout, next_value = self.collect_rollout(self._env)
        advantages, returns = compute_gae(
            rollout.reward, rollout.value, rollout.done, next_value, hp.gamma, hp.gae_lambda
        )
        stats = self.update(optimizer, rollout, advantages, returns)

        rewards = rollout.reward / hp.reward_scale
        stats["reward"] = rewards.mean()
        stats["explained_variance"] = explained_variance(rollout.value.flatten(), returns.flatten())
        stats["lr"] = torch.tensor(optimizer.param_groups[0]["lr"])
        if rollout.episode_log_returns:
            stats["episode_return"] = torch.tensor(rollout.episode_log_returns).mean()
        # Episodes all last episode_length steps, so every DDP rank logs the same keys each step.
        self.log_dict(
            {f"train/{k}": v for k, v in stats.items()},
            on_step=False,
            on_epoch=True,
            sync_dist=True,
        )

    def update(
        self, optimizer, rollout: Rollout, advantages: Tensor, returns: Tensor
    ) -> dict[str, Tensor]:
        hp = self.hparams
        ppo = hp.algorithm == "ppo"
        flat = {
            "market": rollout.market.flatten(0, 1),
            "position": rollout.position.flatten(0, 1),
            "action": rollout.action.flatten(0, 1),
            "logprob": rollout.logprob.flatten(0, 1),
            "value": rollout.value.flatten(0, 1),
            "aux_target": rollout.aux_target.flatten(0, 1),
            "advantage": advantages.flatten(),
            "return": returns.flatten(),
        }
        size = flat["action"].shape[0]
        epochs, minibatches = (hp.update_epochs, hp.num_minibatches) if ppo else (1, 1)
        minibatch = size // minibatches
        history: dict[str, list[Tensor]] = {
            k: []
            for k in (
                "policy_loss",
                "value_loss",
                "entropy",
                "aux_loss",
                "approx_kl",
                "clip_fraction",
            )
        }
        for _ in range(epochs):
            order = torch.randperm(size, device=self.device)
            for start in range(0, minibatch * minibatches, minibatch):
                mb = {k: v[order[start : start + minibatch]] for k, v in flat.items()}
                dist, value, aux = self.policy(mb["market"], mb["position"])
                logprob = dist.log_prob(mb["action"])
                entropy = dist.entropy().mean()
                log_ratio = logprob - mb["logprob"]
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = (
                        (ratio - 1.0) - log_ratio
                    ).mean()  # Schulman's low-variance estimator
                    clip_fraction = ((ratio - 1.0).abs() > hp.clip_coef).float().mean()
                advantage = mb["advantage"]
                if hp.normalize_advantages and advantage.numel() > 1:
                    advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
                if ppo:
                    policy_loss = torch.max(
                        -advantage * ratio,
                        -advantage * ratio.clamp(1.0 - hp.clip_coef, 1.0 + hp.clip_coef),
                    ).mean()
                else:
                    policy_loss = -(advantage * logprob).mean()
                if ppo and hp.clip_value_loss:
                    clipped = mb["value"] + (value - mb["value"]).clamp(-hp.clip_coef, hp.clip_coef)
                    value_loss = (
                        0.5
                        * torch.max(
                            (value - mb["return"]) ** 2, (clipped - mb["return"]) ** 2
                        ).mean()
                    )
                else:
                    value_loss = 0.5 * ((value - mb["return"]) ** 2).mean()
                aux_loss = torch.nn.functional.mse_loss(aux, mb["aux_target"])
                loss = (
                    policy_loss
                    - hp.entropy_coef * entropy
                    + hp.value_coef * value_loss
                    + hp.aux_coef * aux_loss
                )

                optimizer.zero_grad()
                self.manual_backward(loss)
                optimizer.step()  # clipping happens in on_before_optimizer_step, after the monitors
                for key, value_ in zip(
                    history, (policy_loss, value_loss, entropy, aux_loss, approx_kl, clip_fraction)
                ):
                    history[key].append(value_.detach())
            # Every DDP rank must take the same number of steps: decide on the mean KL of all ranks.
            if (
                ppo
                and hp.target_kl is not None
                and self.trainer.strategy.reduce(approx_kl, reduce_op="mean") > hp.target_kl
            ):
                break
        return {k: torch.stack(v).mean() for k, v in history.items()}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Module hooks run after callbacks': GradNormMonitor has already read the unclipped norms.
        if self.hparams.max_grad_norm:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.hparams.max_grad_norm,
                gradient_clip_algorithm="norm",
            )

    # ------------------------------------------------------------------ casebook doctor
    # A supervised view of the agent for `casebook doctor`, since training_step gathers its own
    # data: the critic regressing the GAE returns of one fixed minibatch is what the single-batch
    # overfit and the learning-rate range test fit; at initialization, the policy's entropy
    # should be that of a uniform policy.
    @torch.no_grad()
    def initial_statistics(self, batch: Tensor) -> dict[str, tuple[float, float]]:
        """Mean policy entropy on the environments' current observations vs ln(num_actions);
        nothing for a continuous policy (its initial entropy is set by `log_std`)."""
        if self.hparams.action_mode == "continuous":
            return {}
        dist, _, _ = self.policy(*self._env.observe())
        entropy = float(dist.entropy().mean())
        return {"policy entropy": (entropy, math.log(self.hparams.num_actions))}

    def fixed_batch(self, batch: Tensor) -> dict[str, Tensor]:
        """One update minibatch of a fresh rollout, with its GAE returns as fixed targets."""
        hp = self.hparams
        rollout, next_value = self.collect_rollout(self._env)
        _, returns = compute_gae(
            rollout.reward, rollout.value, rollout.done, next_value, hp.gamma, hp.gae_lambda
        )
        size = returns.numel() // (hp.num_minibatches if hp.algorithm == "ppo" else 1)
        return {
            "market": rollout.market.flatten(0, 1)[:size],
            "position": rollout.position.flatten(0, 1)[:size],
            "return": returns.flatten()[:size],
        }

    def fixed_batch_loss(self, fixed: dict[str, Tensor]) -> Tensor:
        """The critic's value loss on the fixed minibatch."""
        _, value, _ = self.policy(fixed["market"], fixed["position"])
        return 0.5 * ((value - fixed["return"]) ** 2).mean()

    def expected_initial_loss(self, fixed: dict[str, Tensor]) -> float:
        """The value loss of a critic that predicts 0: 0.5 * mean(return^2)."""
        return float(0.5 * fixed["return"].pow(2).mean())

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        metrics = self.evaluate("valid", "val")
        if not self.trainer.sanity_checking:
            self.last_val_sharpe = metrics["val/sharpe"]
            # The same deterministic backtest on the training period: TrainValidSkew compares the two.
            self.evaluate("train", "train", baselines=False)

    def test_step(self, batch: Tensor, batch_idx: int) -> None:
        members, weights = self.ensemble()
        self.evaluate("test", "test", members=members, weights=weights, figures=True)

    def evaluate(
        self,
        split: str,
        prefix: str,
        members: list[TradingPolicy] | None = None,
        weights: list[float] | None = None,
        baselines: bool = True,
        figures: bool = False,
    ) -> dict[str, float]:
        """Backtest each asset of the split; log the mean over assets (and per asset if several)."""
        datamodule = self.trainer.datamodule
        cost, execution = datamodule.cost_bps, datamodule.execution
        per_asset = []
        for asset in datamodule.backtest_data(split):
            positions = self.backtest_positions(
                asset.market.to(self.device), members, weights
            ).cpu()
            agent = simulate(positions, asset, cost, execution)
            figures_of_merit = performance(agent, positions)
            row = {k: figures_of_merit[k] for k in REPORTED}
            if baselines:
                row.update(self.baselines(split, asset, cost, execution))
            per_asset.append((asset.name, row))
            if figures:
                hold = simulate(torch.ones_like(positions), asset, cost, execution)
                figure = equity_figure(
                    asset.dates, agent, hold, positions, f"{asset.name}: {split} split"
                )
                log_figure(self.trainer, f"{prefix}/equity_{asset.name}", figure)
                self.report_worst_trades(prefix, asset, positions, agent)
        metrics = {
            f"{prefix}/{k}": float(np.mean([row[k] for _, row in per_asset]))
            for k in per_asset[0][1]
        }
        if len(per_asset) > 1:
            for name, row in per_asset:
                metrics.update(
                    {
                        f"{prefix}/{name}_{k}": v
                        for k, v in row.items()
                        if not k.startswith("buy_and_hold")
                    }
                )
        self.log_dict(metrics, batch_size=1, sync_dist=True)
        return metrics

    def report_worst_trades(
        self, prefix: str, asset: BacktestAsset, positions: Tensor, agent: Tensor
    ) -> None:
        """Error analysis: the trades that lost most, as `reports/<prefix>-worst_trades_<asset>`
        (CSV and Markdown) and a figure of the price with them shaded."""
        worst = sorted(trades(asset.dates, positions, agent), key=lambda t: t["return"])
        worst = worst[: self.hparams.worst_trades]
        key = f"{prefix}/worst_trades_{asset.name}"
        log_table(self.trainer, key, [{k: v for k, v in t.items() if k != "_span"} for t in worst])
        title = f"{asset.name}: the {len(worst)} worst trades of the {prefix} split"
        log_figure(self.trainer, key, worst_trades_figure(asset.dates, asset.close, worst, title))

    def baselines(
        self, split: str, asset: BacktestAsset, cost: float, execution: str
    ) -> dict[str, float]:
        """Buy-and-hold and the mean Sharpe of seeded random policies. They do not depend on the
        model, so each (split, asset, costs) is computed once and reused every epoch."""
        key = (split, asset.name, len(asset), cost, execution)
        if key in self._baseline_cache:
            return self._baseline_cache[key]
        hold = torch.ones(len(asset))
        buy_and_hold = performance(simulate(hold, asset, cost, execution), hold)
        row = {f"buy_and_hold_{k}": buy_and_hold[k] for k in REPORTED}
        if self.hparams.random_baselines:
            generator = torch.Generator().manual_seed(0)
            choices = torch.tensor(self.candidate_positions() or [-1.0, 1.0])
            draws = torch.randint(
                len(choices), (self.hparams.random_baselines, len(asset)), generator=generator
            )
            random_positions = choices[draws]
            random_returns = simulate(random_positions, asset, cost, execution)
            row["random_sharpe"] = float(
                np.mean(
                    [performance(r, p)["sharpe"] for r, p in zip(random_returns, random_positions)]
                )
            )
        self._baseline_cache[key] = row
        return row

    def candidate_positions(self) -> list[float] | None:
        """Positions a discrete agent can hold; an action index is also the index of its position."""
        return {"discrete": [-1.0, 0.0, 1.0], "long_only": [0.0, 1.0]}.get(self.hparams.action_mode)

    @torch.no_grad()
    def backtest_positions(
        self,
        market: Tensor,
        members: list[TradingPolicy] | None = None,
        weights: list[float] | None = None,
    ) -> Tensor:
        """Deterministic positions over consecutive decision days, each chosen seeing the position
        the agent holds. market: (days, channels, window, features) → (days,).

        Discrete agents: the trunk runs once over all days, the heads once per day and candidate
        position, and the sequential part is a table lookup. Continuous agents step day by day.
        An ensemble averages action probabilities (or means) with the given weights."""
        members = members or [self.policy]
        weights = torch.tensor(
            weights or [1.0] * len(members), dtype=torch.float32, device=market.device
        )
        weights = weights / weights.sum()
        modes = [m.training for m in members]
        for m in members:
            m.eval()
        trunks = [torch.cat([m.trunk(chunk) for chunk in market.split(512)]) for m in members]
        candidates = self.candidate_positions()
        if candidates is not None:
            days = market.shape[0]
            probabilities = 0.0
            for member, trunk, weight in zip(members, trunks, weights):
                per_position = []
                for held in candidates:
                    logits, _, _ = member.heads(
                        trunk, torch.full((days,), held, device=market.device)
                    )
                    per_position.append(logits.softmax(-1))
                probabilities = probabilities + weight * torch.stack(
                    per_position, dim=1
                )  # (days, positions, actions)
            best = probabilities.argmax(-1).cpu().numpy()
            chosen = np.empty(days, dtype=np.int64)
            held_index = candidates.index(0.0)  # start flat, as simulate() does
            for t in range(days):
                held_index = chosen[t] = best[t, held_index]
            positions = torch.tensor(candidates)[torch.from_numpy(chosen)]
        else:
            held = torch.zeros(1, device=market.device)
            out = []
            for t in range(market.shape[0]):
                mean = sum(
                    w * m.heads(tr[t : t + 1], held)[0].squeeze(-1)
                    for m, tr, w in zip(members, trunks, weights)
                )
                held = mean.clamp(-1.0, 1.0)
                out.append(held)
            positions = torch.cat(out)
        for m, mode in zip(members, modes):
            m.train(mode)
        return positions.float()

    # ------------------------------------------------------------------ ensembles and checkpoints
    def ensemble(self) -> tuple[list[TradingPolicy] | None, list[float] | None]:
        paths = self.hparams.ensemble_checkpoints
        if not paths:
            return None, None
        members, sharpes = [], []
        for path in paths:
            try:
                checkpoint = torch.load(path, map_location=self.device, weights_only=True)
            except Exception as error:  # OSError, pickle.UnpicklingError, RuntimeError, ...
                first = (str(error).strip().splitlines() or [""])[0]
                raise DataError(
                    f"{path}: cannot read ensemble checkpoint ({error.__class__.__name__}: {first})"
                ) from None
            state = {
                k.removeprefix("policy."): v
                for k, v in checkpoint.get("state_dict", {}).items()
                if k.startswith("policy.")
            }
            if not state:
                raise DataError(f"{path}: not a PPOTrader checkpoint (no policy weights)")
            member = TradingPolicy(**self._policy_kwargs()).to(self.device)
            try:
                member.load_state_dict(state)
            except RuntimeError as error:
                first = str(error).splitlines()[0]
                raise DataError(
                    f"{path}: policy does not match this configuration ({first})"
                ) from None
            members.append(member)
            sharpes.append(checkpoint.get("val_sharpe") or 0.0)
        if self.hparams.ensemble_weighting == "val_sharpe" and any(s > 0 for s in sharpes):
            weights = [max(s, 0.0) for s in sharpes]
        else:
            weights = [1.0] * len(members)
        return members, weights

    def _policy_kwargs(self) -> dict:
        hp = self.hparams
        return dict(
            observation_shape=tuple(hp.observation_shape),
            num_actions=hp.num_actions,
            continuous=hp.action_mode == "continuous",
            **{name: hp[name] for name in POLICY_OPTIONS},
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["val_sharpe"] = self.last_val_sharpe

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.last_val_sharpe = checkpoint.get("val_sharpe")


def explained_variance(predicted: Tensor, target: Tensor) -> Tensor:
    """1 - Var[target - predicted] / Var[target]: 1 is a perfect value function, ≤ 0 no better than a constant."""
    variance = target.var()
    if variance == 0:
        return torch.tensor(float("nan"))
    return 1.0 - (target - predicted).var() / variance
