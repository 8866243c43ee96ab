"""The LightningDataModule contract the trading LightningModule codes against."""

from types import SimpleNamespace

import lightning as L
import pandas as pd
import pytest
import torch

from casebook.common.errors import DataError
from datamodules.trading import MarketDataModule, SyntheticMarket, synthetic_market


def test_dataloaders_pace_iterations_and_run_one_backtest_step(make_module):
    module = make_module(iterations_per_epoch=7)
    assert len(list(module.train_dataloader())) == 7
    assert len(list(module.val_dataloader())) == 1
    assert len(list(module.test_dataloader())) == 1


def test_each_ddp_rank_gets_its_own_environments(make_module):
    rank0 = make_module()
    rank1 = MarketDataModule(**rank0.hparams)
    rank1.trainer = SimpleNamespace(global_rank=1)
    rank1.setup("fit")
    assert not torch.equal(rank0.train_env.row, rank1.train_env.row)
    same = make_module()
    assert torch.equal(rank0.train_env.row, same.train_env.row)


def test_backtest_data_holds_every_decision_day_of_the_split(make_module):
    module = make_module()
    [asset] = module.backtest_data("test")
    assert asset.market.shape == (len(asset), *module.observation_shape)
    assert len(asset) == len(module.decision_rows("test"))
    assert asset.market.abs().max() <= module.observation_clip


def test_synthetic_universe_of_several_assets(make_module):
    module = make_module(synthetic={"assets": 2})
    assert [a.name for a in module.backtest_data("valid")] == ["synthetic0", "synthetic1"]


def test_a_split_without_decision_days_is_a_one_line_data_error(make_module):
    module = make_module(splits={"valid_end": "1999-10-20"})  # valid shorter than the embargo
    with pytest.raises(DataError, match="split 'valid' has no decision days"):
        module.make_env("valid")
    with pytest.raises(DataError, match="fewer than the"):
        make_module(synthetic={"days": 15})


class _RandomTrader(L.LightningModule):
    """Steps the datamodule's environments with seeded random actions; records the rewards."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(1))
        self.rewards: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        env = self.trainer.datamodule.train_env
        generator = torch.Generator().manual_seed(self.global_step)
        for _ in range(3):
            action = torch.randint(0, 3, (env.num_envs,), generator=generator)
            self.rewards.append(env.step(action)[2])
        return self.bias.sum() * 0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(module, max_steps, tmp_path, ckpt_path=None):
    trainer = L.Trainer(
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trader = _RandomTrader()
    trainer.fit(trader, datamodule=module, ckpt_path=ckpt_path)
    return trainer, trader


def test_resuming_from_a_checkpoint_continues_the_environments_exactly(make_module, tmp_path):
    _, straight = _fit(make_module(iterations_per_epoch=4), 6, tmp_path)

    trainer, first = _fit(make_module(iterations_per_epoch=4), 3, tmp_path)
    trainer.save_checkpoint(tmp_path / "half.ckpt")
    _, second = _fit(make_module(iterations_per_epoch=4), 6, tmp_path, tmp_path / "half.ckpt")
    assert len(straight.rewards) == 18
    for want, got in zip(straight.rewards, first.rewards + second.rewards, strict=True):
        assert torch.equal(want, got)


def _write_csv(bars, path):
    frame = pd.DataFrame(
        {
            "Date": bars.dates.strftime("%Y-%m-%d"),
            "Open": bars.open,
            "High": bars.high,
            "Low": bars.low,
            "Close": bars.close,
            "Volume": bars.volume,
        }
    )
    frame.to_csv(path, index=False)
    return str(path)


def test_csv_files_form_a_universe_of_one_asset_each(make_module, bars, tmp_path):
    paths = [_write_csv(bars, tmp_path / "a.csv"), _write_csv(bars, tmp_path / "b.csv")]
    module = make_module(source="csv", path=paths)
    assert [a.name for a in module.backtest_data("test")] == ["a", "b"]
    synthetic = make_module()
    torch.testing.assert_close(module.feature_mean, synthetic.feature_mean)


def test_a_csv_too_short_for_one_observation_names_the_file(make_module, bars, tmp_path):
    path = _write_csv(
        synthetic_market("none", SyntheticMarket(days=12), seed=0, name="s"), tmp_path / "s.csv"
    )
    with pytest.raises(DataError, match=r"s\.csv: 12 trading days, fewer than the 18"):
        make_module(source="csv", path=path)
