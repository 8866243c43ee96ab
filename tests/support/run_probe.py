"""A callback for tests of whole runs: what each rank trained on, validated on, logged and ended with.

    casebook fit ... --trainer.callbacks+=run_probe.RunProbe

Every rank writes ``<default_root_dir>/probe/rank<k>.json`` when fitting ends: the samples of its
training and (last epoch's) validation batches, the episode start rows and seed of its trading
environments, the metric names sent to the loggers, and a digest of its weights (which DDP keeps
equal on every rank).
"""

import hashlib
import json
from pathlib import Path

import torch
from lightning.pytorch import Callback


def sample_ids(batch) -> list[str]:
    """Names of a batch's samples: utterance ids, video ids, or (video id, step text) pairs."""
    if not isinstance(batch, dict):
        return []  # the trading task's pacing item: its data are the environments
    if "ids" in batch:
        return [str(i) for i in batch["ids"]]
    if "texts" in batch:
        return [f"{v}: {t}" for v, t in zip(batch["video_ids"], batch["texts"])]
    return [str(v) for v in batch.get("video_ids", [])]


def weights_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


class RunProbe(Callback):
    def __init__(self) -> None:
        self.record: dict = {"train_ids": [], "val_ids": []}

    def on_train_start(self, trainer, pl_module) -> None:
        self.record.update(rank=trainer.global_rank, world_size=trainer.world_size)
        env = getattr(trainer.datamodule, "train_env", None)
        if env is not None:
            self.record["env_seed"] = env.generator.initial_seed()
            self.record["env_start_rows"] = env.row.tolist()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.record["train_ids"] += sample_ids(batch)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.record["val_ids"] = []

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.record["val_ids"] += sample_ids(batch)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.record["logged"] = sorted(trainer.logged_metrics)
        self.record["weights"] = weights_digest(pl_module)
        path = Path(trainer.default_root_dir) / "probe" / f"rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.record, indent=1))
