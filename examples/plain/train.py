"""A small byte-level language model (an MLP over a context window) in plain PyTorch.

Runs as is (``python train.py``), under torchrun, or recorded by repro:

    repro run --out runs/plain.json -- python examples/plain/train.py --steps 40
    repro run --nproc 2 --out runs/plain2.json -- python examples/plain/train.py
    repro audit runs/plain.json --allow-command

The lines that make it recordable end with ``# repro`` (docs/results.md counts them).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from repro import record  # repro

VOCAB = 256


class ByteMLP(nn.Module):
    """Predicts the next byte from the previous ``context`` bytes."""

    def __init__(self, context: int, width: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.hidden = nn.Linear(context * width, hidden)
        self.out = nn.Linear(hidden, VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.hidden(self.embed(x).flatten(1))))


def batch(data: torch.Tensor, context: int, size: int, gen: torch.Generator, rank: int, world: int):
    """``size`` windows per rank, drawn for the whole world from one generator (ranks stay in step)."""
    starts = torch.randint(len(data) - context - 1, (size * world,), generator=gen)[rank::world]
    x = torch.stack([data[s:s + context] for s in starts.tolist()])
    y = torch.stack([data[s + context] for s in starts.tolist()])
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(Path(__file__).resolve().parent.parent / "data" / "corpus.txt"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=16)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    args = parser.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():  # torchrun (repro run --nproc N has already joined)
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0

    seed = record.seed()  # repro
    record.data(args.data)  # repro
    data = torch.tensor(list(Path(args.data).read_bytes()), dtype=torch.long)
    split = int(len(data) * 0.9)
    train, val = data[:split], data[split:]

    model: nn.Module = ByteMLP(args.context)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    gen = torch.Generator().manual_seed(seed)
    state = {"model": model, "optimizer": optimizer, "schedule": schedule, "batches": gen}  # repro
    resumed = record.resume(state)  # repro
    val_x, val_y = batch(val, args.context, 64, torch.Generator().manual_seed(0), 0, 1)

    for step in range((resumed.step if resumed else 0) + 1, args.steps + 1):  # repro
        x, y = batch(train, args.context, args.batch, gen, rank, world)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        lr = schedule.get_last_lr()[0]
        optimizer.step()
        schedule.step()
        record.step(loss, lr=lr, grad_norm=norm, tokens=x.numel(), batch=x)  # repro
        if step % args.checkpoint_every == 0 or step == args.steps:
            with torch.no_grad():
                val_loss = F.cross_entropy(model(val_x), val_y)
            record.validation(val_loss)  # repro
            record.checkpoint(state)  # repro
            if rank == 0:
                print(f"step {step}: loss {loss.item():.4f}, validation {val_loss.item():.4f}")


if __name__ == "__main__":
    main()
