"""A small, real LightningModule and LightningDataModule for the adapter's tests (not a GPT).

A regression MLP with dropout (so training consumes the global torch RNG, which repro must save
and restore), a step-interval StepLR scheduler (whose state must survive a resume),
``validation_step`` that only logs ``val_loss`` (as most Lightning code does), and a shuffled
training loader whose epochs end mid-run.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class TinyRegressor(pl.LightningModule):
    """``y = MLP(x)`` with dropout, AdamW and a stepwise learning-rate decay."""

    def __init__(self, hidden: int = 16, lr: float = 0.02, dropout: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(hidden, 1)
        )
        self.seen_steps: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        self.seen_steps.append(self.global_step)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams["lr"])
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.7)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class TinyData(pl.LightningDataModule):
    """40 training and 16 validation examples of a noisy linear problem, made from ``seed``."""

    def __init__(self, seed: int = 0, batch_size: int = 8, data_dir: str | None = None) -> None:
        super().__init__()
        self.seed, self.batch_size, self.data_dir = seed, batch_size, data_dir

    def setup(self, stage: str) -> None:
        if self.data_dir is not None:  # a CSV: feature columns, then the target
            import numpy as np

            table = torch.from_numpy(np.loadtxt(self.data_dir, delimiter=",", skiprows=1, dtype=np.float32))
            x, y = table[:, :-1], table[:, -1:]
        else:
            gen = torch.Generator().manual_seed(self.seed)
            x = torch.randn(56, 4, generator=gen)
            y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.1 * torch.randn(56, 1, generator=gen)
        self.train_set, self.val_set = TensorDataset(x[:40], y[:40]), TensorDataset(x[40:], y[40:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)
