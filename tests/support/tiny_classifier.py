"""A tiny classification task that `casebook doctor` can examine, healthy or broken on purpose.

Each knob breaks one thing the doctor must catch: `init_scale` (a bad initialization),
`hidden_bias` (dead ReLUs), `lr` (a learning rate far too high), `nan_rows` (NaN in the data),
`leak` (validation rows copied from training), `one_class` (degenerate labels).
"""

import math

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class TinyClassDataModule(L.LightningDataModule):
    def __init__(
        self,
        num_features: int = 8,
        num_classes: int = 4,
        num_samples: int = 256,
        batch_size: int = 32,
        seed: int = 0,
        nan_rows: int = 0,
        leak: bool = False,
        one_class: bool = False,
    ) -> None:
        """
        Args:
            num_features: input width, linked to the model.
            num_classes: number of classes.
            num_samples: rows per split.
            batch_size: rows per batch.
            seed: data seed.
            nan_rows: training rows whose first feature is NaN.
            leak: the validation split reuses the first quarter of the training rows.
            one_class: every training label is class 0.
        """
        super().__init__()
        self.save_hyperparameters()
        self.feature_dim = num_features
        centers = torch.randn(
            num_classes, num_features, generator=torch.Generator().manual_seed(seed)
        )
        self.splits = {}
        for offset, split in enumerate(("train", "val")):
            generator = torch.Generator().manual_seed(seed + 1 + offset)
            y = torch.randint(num_classes, (num_samples,), generator=generator)
            x = centers[y] + 0.5 * torch.randn(num_samples, num_features, generator=generator)
            ids = [f"{split}-{i}" for i in range(num_samples)]
            self.splits[split] = [x, y, ids]
        train_x, train_y, train_ids = self.splits["train"]
        if one_class:
            train_y.zero_()
        if nan_rows:
            train_x[:nan_rows, 0] = float("nan")
        if leak:
            quarter = num_samples // 4
            val_x, val_y, val_ids = self.splits["val"]
            val_x[:quarter], val_y[:quarter] = train_x[:quarter], train_y[:quarter]
            val_ids[:quarter] = train_ids[:quarter]

    def train_dataloader(self) -> DataLoader:
        x, y, _ = self.splits["train"]
        return DataLoader(TensorDataset(x, y), batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        x, y, _ = self.splits["val"]
        return DataLoader(TensorDataset(x, y), batch_size=self.hparams.batch_size)

    def split_keys(self) -> dict[str, dict[str, set[str]]]:
        return {"row": {split: set(ids) for split, (_, _, ids) in self.splits.items()}}

    def class_counts(self) -> dict[str, int]:
        labels = self.splits["train"][1]
        return {f"class {k}": int((labels == k).sum()) for k in range(self.hparams.num_classes)}


class TinyClassifier(L.LightningModule):
    def __init__(
        self,
        feature_dim: int = 8,
        num_classes: int = 4,
        hidden: int = 64,
        lr: float = 0.1,
        init_scale: float = 1.0,
        hidden_bias: float = 0.0,
    ) -> None:
        """
        Args:
            feature_dim: input width (linked from the data).
            num_classes: number of classes.
            hidden: hidden ReLU units.
            lr: SGD learning rate (momentum 0.9).
            init_scale: multiplies the initial weights (100: a bad initialization).
            hidden_bias: initial bias of the hidden layer (-100: every ReLU dead).
        """
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )
        with torch.no_grad():
            for layer in (self.net[0], self.net[2]):
                layer.weight.mul_(init_scale)
            self.net[0].bias.fill_(hidden_bias)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def expected_initial_loss(self, batch) -> float:
        return math.log(self.hparams.num_classes)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
