"""GradNormMonitor: gradient norms, parameter and activation statistics, and a guard on non-finite values.

Add it to any run from YAML:

    trainer:
      callbacks:
        - class_path: callbacks.GradNormMonitor
          init_args: {log_every_n_steps: 50, activation_every_n_steps: 200}

Gradients are read in ``on_before_optimizer_step``: after backward (and DDP's all-reduce, and AMP
unscaling), before the Trainer's own ``gradient_clip_val`` clipping. Place it before
``AdaptiveGradClip`` in the callback list so it, too, sees the norms before clipping.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

# Modules whose outputs say something about unit health; containers and norms add little.
_DEFAULT_ACTIVATION_TYPES = (
    "Linear",
    "Conv1d",
    "Conv2d",
    "ReLU",
    "GELU",
    "SiLU",
    "LeakyReLU",
    "Tanh",
    "Sigmoid",
)
_SATURATION_RANGES = {"Tanh": (-1.0, 1.0), "Sigmoid": (0.0, 1.0), "Hardtanh": (-1.0, 1.0)}


class NonFiniteError(RuntimeError):
    """Raised when a loss or gradient is NaN or infinite and the monitor is told to stop."""


def log_to_loggers(trainer: Trainer, metrics: dict[str, float]) -> None:
    """Straight to the loggers, as Lightning's LearningRateMonitor does: diagnostics need no
    epoch aggregation or cross-rank sync, and ``self.log`` costs about a millisecond per key."""
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)


def layer_name(parameter_name: str) -> str:
    """The module path that owns a parameter: ``trunk.0.conv.weight`` -> ``trunk.0.conv``."""
    return parameter_name.rsplit(".", 1)[0] if "." in parameter_name else parameter_name


class GradNormMonitor(Callback):
    """Logs gradient norms (global and per layer), the parameter norm and activation statistics
    on sampled steps; warns once per layer on exploding or vanishing gradients;
    stops (after saving a checkpoint), skips the step, or warns on a non-finite loss or gradient."""

    def __init__(
        self,
        norm_type: float = 2.0,
        log_every_n_steps: int = 50,
        activation_every_n_steps: int = 100,
        activation_types: list[str] | None = None,
        explode_threshold: float = 1e3,
        vanish_threshold: float = 1e-7,
        saturation_margin: float = 0.01,
        on_nonfinite: Literal["stop", "skip", "warn"] = "stop",
    ) -> None:
        """
        Args:
            norm_type: the p of the p-norm used for every gradient and parameter norm.
            log_every_n_steps: gradient and parameter norms are logged every N optimizer steps (every
                step costs one fused norm over all gradients and the non-finite check).
            activation_every_n_steps: forward hooks record activation statistics on every N-th training
                batch only, so the monitor stays cheap; 0 turns activation statistics off.
            activation_types: module class names whose outputs are recorded (default: Linear, Conv,
                and common activation functions).
            explode_threshold: warn (once per layer) when a layer's gradient norm exceeds this.
            vanish_threshold: warn (once per layer) when a layer's gradient norm falls below this.
            saturation_margin: an output of Tanh/Sigmoid within this distance of its bound is saturated.
            on_nonfinite: what a NaN/inf loss or gradient does: ``stop`` saves a checkpoint and stops
                with one clear message; ``skip`` drops the gradients so the optimizer step changes
                nothing; ``warn`` only warns.
        """
        super().__init__()
        if on_nonfinite not in ("stop", "skip", "warn"):
            raise ValueError(f"on_nonfinite must be stop, skip or warn, not {on_nonfinite!r}")
        self.norm_type = float(norm_type)
        self.log_every_n_steps = max(1, log_every_n_steps)
        self.activation_every_n_steps = activation_every_n_steps
        self.activation_types = tuple(activation_types or _DEFAULT_ACTIVATION_TYPES)
        self.explode_threshold = explode_threshold
        self.vanish_threshold = vanish_threshold
        self.saturation_margin = saturation_margin
        self.on_nonfinite = on_nonfinite
        self.last_global_norm: float | None = None
        self.last_layer_norms: dict[str, float] = {}
        self.last_activation_stats: dict[str, dict[str, float]] = {}
        self.skipped_steps = 0
        self._flagged_this_batch = False
        self._warned: set[tuple[str, str]] = set()
        self._hooks: list[Any] = []

    # ----------------------------------------------------------------- gradients
    @torch.no_grad()
    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        named = [(n, p) for n, p in pl_module.named_parameters() if p.grad is not None]
        if not named:
            return
        grads = [p.grad for _, p in named]
        per_param = torch._foreach_norm(grads, self.norm_type)  # one fused kernel over all grads
        per_param = torch.stack(per_param).float()
        global_norm = torch.linalg.vector_norm(per_param, self.norm_type)
        self.last_global_norm = float(global_norm)  # host sync 1 of 2 per step (2: the loss)

        if not math.isfinite(self.last_global_norm):
            bad = sorted(
                {
                    layer_name(n)
                    for (n, _), v in zip(named, per_param.tolist())
                    if not math.isfinite(v)
                }
            )
            self._handle_nonfinite(trainer, pl_module, f"non-finite gradient in {', '.join(bad)}")
            if self.on_nonfinite == "skip":
                for _, p in named:
                    p.grad = None
            return

        # Per-layer work only on sampled steps, or when some layer may have exploded (a layer above
        # the threshold implies the global norm is above it too), so most steps cost one fused norm.
        sampled = trainer.global_step % self.log_every_n_steps == 0
        if not sampled and self.last_global_norm <= self.explode_threshold:
            return
        # Group parameters into layers: the norm of a layer is the norm of its parameters' norms.
        squares: dict[str, float] = defaultdict(float)
        for (name, _), value in zip(named, per_param.tolist()):
            squares[layer_name(name)] += value**self.norm_type
        self.last_layer_norms = {k: v ** (1.0 / self.norm_type) for k, v in squares.items()}
        for layer, value in self.last_layer_norms.items():
            if value > self.explode_threshold:
                detail = f"{value:.3g} > explode_threshold={self.explode_threshold:g}"
                self._warn_once(layer, "explode", detail, trainer)
            elif sampled and value < self.vanish_threshold:
                detail = f"{value:.3g} < vanish_threshold={self.vanish_threshold:g}"
                self._warn_once(layer, "vanish", detail, trainer)

        if sampled:
            metrics = {f"grad_norm/{k}": v for k, v in self.last_layer_norms.items()}
            metrics["grad/global_norm"] = self.last_global_norm
            param_norms = torch.stack(
                torch._foreach_norm([p.detach() for _, p in named], self.norm_type)
            )
            metrics["param/global_norm"] = float(
                torch.linalg.vector_norm(param_norms, self.norm_type)
            )
            log_to_loggers(trainer, metrics)

    def _warn_once(self, layer: str, kind: str, detail: str, trainer: Trainer) -> None:
        if (layer, kind) in self._warned:
            return
        self._warned.add((layer, kind))
        rank_zero_warn(
            f"GradNormMonitor: gradient norm of layer '{layer}' {'exploded' if kind == 'explode' else 'vanished'}"
            f" at step {trainer.global_step}: {detail}"
        )

    # ----------------------------------------------------------------- loss
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._remove_hooks(pl_module)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if self._flagged_this_batch:
            self._flagged_this_batch = False
        elif (
            isinstance(loss, torch.Tensor)
            and loss.numel() == 1
            and not torch.isfinite(loss.detach()).item()  # host sync 2 of 2 per step
        ):
            self._handle_nonfinite(trainer, pl_module, f"non-finite loss ({loss.item()})")

    def _handle_nonfinite(self, trainer: Trainer, pl_module: LightningModule, what: str) -> None:
        self._flagged_this_batch = True
        where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
        if self.on_nonfinite == "warn":
            rank_zero_warn(f"GradNormMonitor: {what} at {where}")
            return
        if self.on_nonfinite == "skip":
            self.skipped_steps += 1
            rank_zero_warn(
                f"GradNormMonitor: {what} at {where}; optimizer step skipped ({self.skipped_steps} so far)"
            )
            return
        directory = Path(
            getattr(trainer.checkpoint_callback, "dirpath", None)
            or Path(trainer.default_root_dir) / "checkpoints"
        )
        path = directory / f"nonfinite-step{trainer.global_step}.ckpt"
        # The weights are still those of the last finite step: the optimizer has not applied this one.
        trainer.save_checkpoint(path, weights_only=False)  # a full state: resumable
        raise NonFiniteError(
            f"{what} at {where}; checkpoint of the last finite weights saved to {path}. "
            "Lower the learning rate, enable clipping, or set on_nonfinite=skip."
        )

    # ----------------------------------------------------------------- activations
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        every = self.activation_every_n_steps
        if every and trainer.global_step % every == 0 and not self._hooks:
            self.last_activation_stats = {}
            for name, module in pl_module.named_modules():
                if type(module).__name__ in self.activation_types:
                    self._hooks.append(
                        module.register_forward_hook(self._make_hook(name, type(module).__name__))
                    )

    def _make_hook(self, name: str, kind: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if name in self.last_activation_stats or not isinstance(output, torch.Tensor):
                return  # first call of the batch only
            self.last_activation_stats[name] = self.activation_stats(output.detach(), kind)

        return hook

    def activation_stats(self, output: torch.Tensor, kind: str) -> dict[str, float]:
        """Mean, std, fraction of dead units (never positive in the batch) and, for bounded
        activations, fraction of saturated outputs."""
        y = output.float()
        # Units are channels for conv outputs (batch, channels, ...), else the last dimension.
        units = y.movedim(1, -1) if kind.startswith("Conv") and y.dim() > 2 else y
        units = units.reshape(-1, units.shape[-1]) if units.dim() > 1 else units.reshape(-1, 1)
        stats = {
            "mean": float(y.mean()),
            "std": float(y.std()) if y.numel() > 1 else 0.0,
            "dead": float((units.amax(dim=0) <= 0).float().mean()),
        }
        if kind in _SATURATION_RANGES:
            low, high = _SATURATION_RANGES[kind]
            margin = self.saturation_margin
            stats["saturated"] = float(((y <= low + margin) | (y >= high - margin)).float().mean())
        return stats

    def _remove_hooks(self, pl_module: LightningModule) -> None:
        if not self._hooks:
            return
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        metrics = {
            f"activation_{stat}/{layer}": value
            for layer, stats in self.last_activation_stats.items()
            for stat, value in stats.items()
        }
        if metrics:
            log_to_loggers(pl_module.trainer, metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = state_dict.get("skipped_steps", 0)
