"""A callback for tests of W&B runs: the run's config as wandb holds it, written when fitting ends.

    casebook fit ... --trainer.callbacks+=wandb_config_probe.WandbConfigProbe

Rank 0 writes ``<default_root_dir>/wandb_config.json``: ``run.config`` of the first WandbLogger
(what an offline run's ``wandb sync`` uploads), without wandb's own ``_wandb`` entry.
"""

import json
from pathlib import Path

from lightning.pytorch import Callback
from lightning.pytorch.loggers import WandbLogger


class WandbConfigProbe(Callback):
    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        logger = next(lg for lg in trainer.loggers if isinstance(lg, WandbLogger))
        config = {k: v for k, v in logger.experiment.config.as_dict().items() if k != "_wandb"}
        path = Path(trainer.default_root_dir) / "wandb_config.json"
        path.write_text(json.dumps(config, indent=1, sort_keys=True, default=str))
