"""A tiny GPT-2 built from a config (no download) trained by a ``transformers.Trainer`` on bytes.

The tokenizer is the identity on bytes (ids 0-255), so nothing is fetched. Runs as is
(``python train.py``) or recorded by repro:

    repro run --out runs/hf.json -- python examples/transformers/train.py

The lines that make it recordable end with ``# repro`` (docs/results.md counts them).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.utils.data import Dataset
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from repro import record  # repro
from repro.record.transformers import ReproCallback  # repro


class ByteWindows(Dataset):
    """Fixed windows of ``context`` bytes; the labels are the inputs (the model shifts them)."""

    def __init__(self, data: torch.Tensor, context: int) -> None:
        self.data, self.context = data, context
        self.starts = list(range(0, len(data) - context, context // 2))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        window = self.data[self.starts[i]:self.starts[i] + self.context]
        return {"input_ids": window, "labels": window}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(Path(__file__).resolve().parent.parent / "data" / "corpus.txt"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=32)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    args = parser.parse_args()

    seed = record.seed()  # repro
    record.data(args.data)  # repro
    data = torch.tensor(list(Path(args.data).read_bytes()), dtype=torch.long)
    split = int(len(data) * 0.9)
    config = GPT2Config(vocab_size=256, n_positions=args.context, n_embd=32, n_layer=2, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    with tempfile.TemporaryDirectory() as out:  # the Trainer's own files are not the run's
        training = TrainingArguments(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch,
            per_device_eval_batch_size=16, learning_rate=args.lr, lr_scheduler_type="cosine", warmup_steps=0,
            eval_strategy="steps", eval_steps=args.checkpoint_every, save_strategy="no", logging_steps=10,
            report_to=[], use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
            seed=seed,  # repro
        )
        trainer = Trainer(model=model, args=training, train_dataset=ByteWindows(data[:split], args.context),
                          eval_dataset=ByteWindows(data[split:], args.context),
                          callbacks=[ReproCallback(every_n_steps=args.checkpoint_every)])  # repro
        trainer.train()


if __name__ == "__main__":
    main()
