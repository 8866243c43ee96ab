"""A tiny regression task for testing the CLI and callbacks without any real task's cost."""

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class TinyDataModule(L.LightningDataModule):
    def __init__(
        self, num_features: int = 4, num_samples: int = 64, batch_size: int = 16, seed: int = 0
    ) -> None:
        """
        Args:
            num_features: input width, linked to the model.
            num_samples: rows per split.
            batch_size: rows per batch.
            seed: data seed.
        """
        super().__init__()
        self.num_features = num_features
        self.feature_dim = num_features
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed

    def _split(self, offset: int) -> TensorDataset:
        generator = torch.Generator().manual_seed(self.seed + offset)
        x = torch.randn(self.num_samples, self.num_features, generator=generator)
        y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(self.num_samples, 1, generator=generator)
        return TensorDataset(x, y)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._split(0), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._split(1), batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._split(2), batch_size=self.batch_size)


class TinyRegressor(L.LightningModule):
    def __init__(
        self, feature_dim: int = 1, hidden: int = 8, lr: float = 0.05, activation: str = "relu"
    ) -> None:
        """
        Args:
            feature_dim: input width (linked from the data).
            hidden: hidden units.
            lr: learning rate.
            activation: relu or tanh.
        """
        super().__init__()
        self.save_hyperparameters()
        act = nn.ReLU() if activation == "relu" else nn.Tanh()
        self.net = nn.Sequential(nn.Linear(feature_dim, hidden), act, nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def model_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self.model_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self.model_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self.model_step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class NaNAtStep(TinyRegressor):
    """A TinyRegressor whose loss turns NaN at one optimizer step, for the non-finite guard."""

    def __init__(self, bad_step: int = 2, **kwargs) -> None:
        """
        Args:
            bad_step: the global step whose loss is multiplied by NaN.
        """
        super().__init__(**kwargs)
        self.bad_step = bad_step

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step == self.bad_step else loss
