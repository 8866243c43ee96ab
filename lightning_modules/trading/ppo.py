"""PPO on the batched trading environment, top to bottom: rollout → GAE → clipped update → log.

    casebook fit  --config configs/ppo_trader.yaml
    casebook test --config configs/ppo_trader.yaml --ckpt_path best

One training step = one iteration: collect `rollout_steps` steps from each of the data's
environments with the current policy, compute GAE, then `update_epochs` epochs of clipped-
surrogate minibatch steps (manual optimization: one batch holds many optimizer steps).
Details follow Schulman et al. 2017 and "The 37 implementation details of PPO" (Huang et al.
2022), as CleanRL's ppo.py: GAE, per-minibatch advantage normalization, clipped value loss,
global gradient clipping, orthogonal init, learning-rate annealing, optional KL early stop; the
diagnostics (approx_kl, clip_fraction, explained_variance) are logged. Beyond CleanRL: an
auxiliary head regresses the next day's market return (a supervised signal for the trunk), and
truncated episodes bootstrap from the value of their last observation.

No host synchronization per environment step (the GPU path): finished episodes are summed on
the device, and the bootstrap values of truncated episodes are computed where the data says an
episode may end, without asking the device whether one did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from datamodules.hparams import from_plain, plain_hyperparameters
from datamodules.trading.env import ActionMode
from lightning_modules.common import (
    LeanAdamW,
    Optimization,
    Schedule,
    clip_grad_norm,
    configure_adamw,
    lr_multiplier,
    time_budget_used,
)
from lightning_modules.trading.evaluation import BacktestConfig
from lightning_modules.trading.policy import TemporalConvPolicy
from lightning_modules.trading.trader import PolicyFactory, TradingAgent, explained_variance


@dataclass(frozen=True)
class PPOConfig:
    """PPO's hyper-parameters (`--model.ppo.*`), CleanRL's names where it has them.

    Args:
        rollout_steps: steps per environment per iteration.
        gamma: discount factor (a position's reward arrives the next day; costs link days).
        gae_lambda: GAE lambda (1.0 = Monte Carlo returns).
        reward_scale: rewards (daily net log returns) are multiplied by this; None: by 1 / the
            standard deviation of the training split's daily returns, so a reward of 1 is a
            typical day's move on any market (S&P 500, a planted 1% market, a 4% crypto).
        reward_clip: scaled rewards are clipped to +-this (fat-tailed days do not dominate an
            update; 0 disables).
        update_epochs: epochs over each rollout.
        num_minibatches: minibatches per epoch.
        clip_coef: the probability-ratio clip, also the value clip.
        clip_value_loss: clip the value update around the rollout's values.
        value_coef: weight of the value loss.
        entropy_coef: weight of the entropy bonus.
        aux_coef: weight of the auxiliary loss (the next day's market return, in percent).
        target_kl: stop an iteration's epochs once the mean approximate KL exceeds this (None: never).
        normalize_advantages: normalize advantages per minibatch.
        max_grad_norm: global gradient-norm clip (0 disables).
        observation_noise: std of Gaussian noise added to each collected observation (in
            normalized feature units), kept in the rollout so acting and updating see the same
            input: an augmentation against memorizing the training days (0 disables).
    """

    rollout_steps: int = 32
    gamma: float = 0.9
    gae_lambda: float = 0.95
    reward_scale: float | None = None
    reward_clip: float = 5.0
    update_epochs: int = 4
    num_minibatches: int = 4
    clip_coef: float = 0.2
    clip_value_loss: bool = True
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    aux_coef: float = 0.5
    target_kl: float | None = None
    normalize_advantages: bool = True
    max_grad_norm: float = 0.5
    observation_noise: float = 0.0


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
    reward: Tensor  # scaled, truncation bootstraps included
    done: Tensor
    aux_target: Tensor  # the next day's market return, scaled as the rewards
    episode_log_return: Tensor  # () sum of finished episodes' net log returns
    episodes: Tensor  # () how many finished


class PPOTrader(TradingAgent):
    """A trading agent trained by PPO on `MarketDataModule`'s environments."""

    def __init__(
        self,
        policy: PolicyFactory = TemporalConvPolicy,
        ppo: PPOConfig = PPOConfig(),
        backtest: BacktestConfig = BacktestConfig(),
        lr: float = 1e-3,
        deep_lr_ratio: float = 0.2,
        anneal_lr: bool = True,
        lr_schedule: Schedule = "linear",
        warmup_steps: int = 0,
        weight_decay: float = 0.0,
        observation_shape: tuple[int, int, int] = (3, 32, 6),
        num_actions: int = 3,
        action_mode: ActionMode = "discrete",
    ) -> None:
        """
        Args:
            policy: the network (class_path + init_args; a TradingPolicy).
            ppo: PPO's hyper-parameters.
            backtest: validation/test backtests, ensembles, error analysis.
            lr: peak learning rate (AdamW) of the policy's linear highway.
            deep_lr_ratio: the deep path's (trunk, body, heads) rate relative to `lr`: slower, so
                the few weights of the highway find a linear edge before the deep path can
                memorize the training days (measured: bench/README.md, "Defaults that learn").
            anneal_lr: follow `lr_schedule` over training, per iteration (False: constant `lr`).
            lr_schedule: linear (PPO's annealing to 0), constant, cosine, flat_cosine or one_cycle.
            warmup_steps: iterations of linear learning-rate warm-up before the schedule.
            weight_decay: decoupled weight decay of weight matrices (AdamW when > 0).
            observation_shape: (channels, window, features) of the market tensor (from the data).
            num_actions: 3 (short/flat/long), 2 (flat/long) or 1 (continuous; from the data).
            action_mode: discrete, long_only or continuous (from the data).
        """
        super().__init__(policy, backtest, observation_shape, num_actions, action_mode)
        self.save_hyperparameters()
        plain_hyperparameters(self)  # checkpoints stay loadable with weights_only=True
        self.config = from_plain(ppo, PPOConfig)
        # (sum of net log returns, count) of the episodes finished this epoch
        self.finished_episodes = torch.zeros(2)
        if not self.config.aux_coef:  # an untrained head: frozen, so DDP expects no gradient
            self.policy.aux_head.requires_grad_(False)
        self.automatic_optimization = False

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW; the deep path (everything but the policy's linear highway) at
        `deep_lr_ratio` times the rate, with weight decay on its matrices."""
        hp = self.hparams
        highway = list(self.policy.highway_parameters())
        chosen = {id(p) for p in highway}
        deep = [p for p in self.parameters() if id(p) not in chosen]
        optimization = replace(Optimization.of(hp), eps=1e-5)  # CleanRL's eps
        # Fused AdamW without torch's per-step bookkeeping, which costs more than the update of
        # these small tensors (LeanAdamW); other devices get plain AdamW.
        lean = {"optimizer_class": LeanAdamW} if self.device.type in ("cpu", "cuda") else {}
        deep_groups = [{"params": deep, "lr": hp.lr * hp.deep_lr_ratio}]
        # No scheduler: manual optimization sets the rate each iteration (set_learning_rate).
        configured = configure_adamw(self, deep_groups, optimization, scheduled=False, **lean)
        optimizer = configured["optimizer"]
        if highway:  # one group, never decayed
            optimizer.add_param_group({"params": highway, "weight_decay": 0.0, "lr": hp.lr})
        return optimizer

    def on_fit_start(self) -> None:
        self.data.train_env.to(self.device)

    @property
    def reward_scale(self) -> float:
        scale = self.config.reward_scale
        return 1.0 / self.data.return_std if scale is None else scale

    # ------------------------------------------------------------------ 1. rollout
    @torch.no_grad()
    def collect_rollout(self) -> tuple[Rollout, Tensor]:
        """`rollout_steps` steps of every environment with the current (sampling) policy."""
        cfg, env = self.config, self.data.train_env
        was_training = self.policy.training
        self.policy.eval()  # dropout / stochastic depth off while acting: logprobs stay comparable
        market, position = env.observe()
        steps = []
        finished_return = torch.zeros((), device=self.device)
        finished = torch.zeros((), device=self.device)
        for _ in range(cfg.rollout_steps):
            if cfg.observation_noise:
                market = market + cfg.observation_noise * torch.randn_like(market)
            dist, value, _ = self.policy(market, position)
            action = dist.sample()
            next_market, next_position, reward, done, info = env.step(action)
            reward = reward * self.reward_scale
            if cfg.reward_clip:
                reward = reward.clamp(-cfg.reward_clip, cfg.reward_clip)
            if env.may_end_episode:
                # Episodes end by a time limit: bootstrap from the last observation (truncation,
                # not termination). Asked of the env's schedule, not of `done`: no device sync.
                _, final_value, _ = self.policy(info["final_market"], info["final_position"])
                reward = reward + cfg.gamma * torch.where(done, final_value, 0.0)
                ended = torch.where(done, info["episode_log_return"], 0.0)
                finished_return = finished_return + ended.sum()
                finished = finished + done.sum()
            aux_target = info["market_log_return"] * self.reward_scale
            steps.append(
                (market, position, action, dist.log_prob(action), value, reward, done, aux_target)
            )
            market, position = next_market, next_position
        next_value = self.policy(market, position)[1]
        self.policy.train(was_training)
        stacked = [torch.stack(column) for column in zip(*steps)]
        return Rollout(*stacked, finished_return, finished), next_value

    # ------------------------------------------------------------------ the iteration
    def training_step(self, batch: Tensor, batch_idx: int) -> None:
        optimizer = self.optimizers()
        self.set_learning_rate(optimizer, batch_idx)
        rollout, next_value = self.collect_rollout()
        cfg = self.config
        advantages, returns = compute_gae(
            rollout.reward, rollout.value, rollout.done, next_value, cfg.gamma, cfg.gae_lambda
        )
        stats = self.update(optimizer, rollout, advantages, returns)
        stats["reward"] = rollout.reward.mean() / self.reward_scale
        stats["explained_variance"] = explained_variance(rollout.value.flatten(), returns.flatten())
        stats["lr"] = torch.tensor(optimizer.param_groups[0]["lr"])
        self.log_dict(
            {f"train/{k}": v for k, v in stats.items()},
            on_step=False,
            on_epoch=True,
            sync_dist=True,
        )
        # Finished episodes are summed on the device and logged once an epoch (no sync per step).
        finished = torch.stack([rollout.episode_log_return, rollout.episodes])
        self.finished_episodes = self.finished_episodes.to(self.device) + finished

    def on_train_epoch_end(self) -> None:
        finished = self.finished_episodes.to(self.device)
        total, count = self.trainer.strategy.reduce(finished, reduce_op="sum")
        if count > 0:  # the same on every rank after the reduce
            self.log("train/episode_return", total / count)
        self.finished_episodes = torch.zeros(2, device=self.device)

    def set_learning_rate(self, optimizer: torch.optim.Optimizer, batch_idx: int) -> None:
        """Manual optimization: Lightning steps no scheduler, so set the rate per iteration."""
        hp = self.hparams
        epochs = self.trainer.max_epochs
        time_used = time_budget_used(self.trainer)  # a run limited only by max_time anneals by time
        if not hp.anneal_lr or ((not epochs or epochs < 0) and time_used is None):
            return
        batches = self.trainer.num_training_batches
        total = epochs * batches if epochs and epochs > 0 else math.inf
        iteration = self.current_epoch * batches + batch_idx
        factor = lr_multiplier(hp.lr_schedule, iteration, total, hp.warmup_steps, time_used)
        for group in optimizer.param_groups:  # each group's own peak rate, scaled
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor

    # ------------------------------------------------------------------ 3. the PPO update
    def update(
        self, optimizer, rollout: Rollout, advantages: Tensor, returns: Tensor
    ) -> dict[str, Tensor]:
        cfg = self.config
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
        minibatch = size // cfg.num_minibatches
        history: dict[str, list[Tensor]] = {}
        for _ in range(cfg.update_epochs):
            order = torch.randperm(size, device=self.device)
            for start in range(0, minibatch * cfg.num_minibatches, minibatch):
                mb = {k: v[order[start : start + minibatch]] for k, v in flat.items()}
                losses = self.losses(mb)
                optimizer.zero_grad()
                self.manual_backward(losses["loss"])
                optimizer.step()  # clipping happens in on_before_optimizer_step, after the monitors
                for key, value in losses.items():
                    history.setdefault(key, []).append(value.detach())
            # Every DDP rank must take the same number of steps: decide on the mean KL of all ranks.
            if cfg.target_kl is not None:
                kl = self.trainer.strategy.reduce(history["approx_kl"][-1], reduce_op="mean")
                if kl > cfg.target_kl:
                    break
        return {k: torch.stack(v).mean() for k, v in history.items()}

    def losses(self, mb: dict[str, Tensor]) -> dict[str, Tensor]:
        """PPO's clipped surrogate, clipped value loss, entropy bonus and the auxiliary loss."""
        cfg = self.config
        dist, value, aux = self.policy(mb["market"], mb["position"])
        logprob = dist.log_prob(mb["action"])
        entropy = dist.entropy().mean()
        log_ratio = logprob - mb["logprob"]
        ratio = log_ratio.exp()
        with torch.no_grad():
            approx_kl = ((ratio - 1.0) - log_ratio).mean()  # Schulman's low-variance estimator
            clip_fraction = ((ratio - 1.0).abs() > cfg.clip_coef).float().mean()
        advantage = mb["advantage"]
        if cfg.normalize_advantages and advantage.numel() > 1:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
        policy_loss = self.policy_loss(advantage, ratio, logprob)
        if cfg.clip_value_loss:
            clipped = mb["value"] + (value - mb["value"]).clamp(-cfg.clip_coef, cfg.clip_coef)
            value_loss = (
                0.5 * torch.max((value - mb["return"]) ** 2, (clipped - mb["return"]) ** 2).mean()
            )
        else:
            value_loss = 0.5 * ((value - mb["return"]) ** 2).mean()
        aux_loss = torch.nn.functional.mse_loss(aux, mb["aux_target"])
        loss = policy_loss - cfg.entropy_coef * entropy + cfg.value_coef * value_loss
        if cfg.aux_coef:  # else the auxiliary head is frozen (see __init__) and only reported
            loss = loss + cfg.aux_coef * aux_loss
        return {
            "loss": loss,
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "aux_loss": aux_loss,
            "approx_kl": approx_kl,
            "clip_fraction": clip_fraction,
        }

    def policy_loss(self, advantage: Tensor, ratio: Tensor, logprob: Tensor) -> Tensor:
        """The clipped surrogate objective (negated): max(-A r, -A clip(r, 1 - eps, 1 + eps))."""
        eps = self.config.clip_coef
        return torch.max(-advantage * ratio, -advantage * ratio.clamp(1.0 - eps, 1.0 + eps)).mean()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Module hooks run after callbacks': GradNormMonitor has already read the unclipped norms.
        # torch's clip (as `clip_grad_norm`, without its per-call grouping) rather than
        # Lightning's `clip_gradients`, which refuses fused optimizers under mixed precision; at
        # this hook the gradients are unscaled (bf16 has no scaler).
        if self.config.max_grad_norm:
            clip_grad_norm(self.parameters(), self.config.max_grad_norm)

    # ------------------------------------------------------------------ casebook doctor
    # A supervised view of the agent for `casebook doctor`, since training_step gathers its own
    # data: the critic regressing the GAE returns of one fixed minibatch is what the single-batch
    # overfit and the learning-rate range test fit; at initialization, the policy's entropy
    # should be that of a uniform policy.
    @torch.no_grad()
    def initial_statistics(self, batch: Tensor) -> dict[str, tuple[float, float]]:
        """Mean policy entropy on the environments' current observations vs ln(num_actions);
        nothing for a continuous policy (its initial entropy is set by `log_std`)."""
        if self.action_mode == "continuous":
            return {}
        dist, _, _ = self.policy(*self.data.train_env.observe())
        return {
            "policy entropy": (float(dist.entropy().mean()), math.log(self.hparams.num_actions))
        }

    def fixed_batch(self, batch: Tensor) -> dict[str, Tensor]:
        """One update minibatch of a fresh rollout (at least 256 samples, or the whole rollout
        if smaller), with its GAE returns as fixed targets. A handful of returns would make the
        reference loss, 0.5 * mean(return^2), a coin toss: with 8 it ranged over 12x by seed."""
        cfg = self.config
        rollout, next_value = self.collect_rollout()
        _, returns = compute_gae(
            rollout.reward, rollout.value, rollout.done, next_value, cfg.gamma, cfg.gae_lambda
        )
        size = max(returns.numel() // cfg.num_minibatches, min(returns.numel(), 256))
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
