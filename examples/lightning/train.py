"""The byte-level MLP language model of examples/plain, trained by a ``lightning.Trainer``.

Runs as is (``python train.py``) or recorded by repro, on one process or with DDP:

    repro run --out runs/lit.json -- python examples/lightning/train.py
    repro run --nproc 2 --threads 1 --out runs/lit2.json -- python examples/lightning/train.py

The lines that make it recordable end with ``# repro`` (docs/results.md counts them).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from repro import record  # repro
from repro.record.lightning import ReproCallback  # repro

VOCAB = 256


class ByteMLP(L.LightningModule):
    """Predicts the next byte from the previous ``context`` bytes."""

    def __init__(self, context: int, lr: float, steps: int, width: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.lr, self.steps = lr, steps
        self.embed = nn.Embedding(VOCAB, width)
        self.hidden = nn.Linear(context * width, hidden)
        self.out = nn.Linear(hidden, VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.hidden(self.embed(x).flatten(1))))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y), sync_dist=True)

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def windows(data: torch.Tensor, context: int) -> TensorDataset:
    starts = torch.arange(0, len(data) - context - 1, 3)
    return TensorDataset(torch.stack([data[s:s + context] for s in starts]), data[starts + context])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(Path(__file__).resolve().parent.parent / "data" / "corpus.txt"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=16)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    args = parser.parse_args()

    record.seed()  # repro
    record.data(args.data)  # repro
    data = torch.tensor(list(Path(args.data).read_bytes()), dtype=torch.long)
    split = int(len(data) * 0.9)
    train = DataLoader(windows(data[:split], args.context), batch_size=args.batch, shuffle=True, drop_last=True)
    val = DataLoader(windows(data[split:], args.context), batch_size=64)
    devices = int(os.environ.get("WORLD_SIZE", "1"))  # under torchrun: one device per process
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        max_steps=args.steps, val_check_interval=args.checkpoint_every, check_val_every_n_epoch=None,
        num_sanity_val_steps=0, gradient_clip_val=1.0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[ReproCallback(every_n_steps=args.checkpoint_every)],  # repro
    )
    trainer.fit(ByteMLP(args.context, args.lr, args.steps), train, val)


if __name__ == "__main__":
    main()
