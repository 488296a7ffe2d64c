"""An out-of-tree repro trainer for the tests: a small MLP regression, not a GPT.

It lives outside the repro distribution on purpose: the tests reach it through a distribution-like
``*.dist-info`` entry point and through ``--trainer tinymlp:TinyMLPTrainer`` on PYTHONPATH. It is
the worked example of ``docs/plugins.md`` (kept in step with it), plus deliberately broken
variants that each violate one part of the contract.

Data: a CSV of feature columns and a target column (``--data FILE``), or, without one, a
synthetic linear problem drawn from a generator seeded by the run seed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from repro.torch_state import (
    generator_state_tensor,
    grad_norm,
    load_generator_state_tensor,
    load_state_dict_tensors,
    state_dict_tensors,
)
from repro.trainer_api import DataSummary, StepOutput, TrainerConfig, TrainerContext, batch_fingerprint


class TinyMLPConfig(TrainerConfig):
    """Config of the MLP regression."""

    data: str | None = Field(None, description="CSV file (header row; last column is the target).")
    hidden: int = Field(16, ge=1, description="Width of the hidden layer.")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-2, gt=0.0)
    val_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="Tail of the rows kept for validation.")
    steps: int = Field(12, ge=1)


class TinyMLPTrainer:
    """Fits ``y = MLP(x)`` with AdamW on random mini-batches."""

    config_model = TinyMLPConfig

    @classmethod
    def presets(cls) -> Mapping[str, Mapping[str, Any]]:
        """``mlp-tiny``: 12 steps, a checkpoint and a validation every 4."""
        return {"mlp-tiny": {"steps": 12, "checkpoint_every": 4, "eval_every": 4}}

    def __init__(self, config: TinyMLPConfig, context: TrainerContext) -> None:
        self.cfg = config
        self.ctx = context
        self.batches = context.generator("batches")  # the only randomness in the batch order

    def prepare_data(self) -> DataSummary:
        """Read the CSV (hashed, so verify and audit check it) or generate the data from the seed."""
        verified = self.ctx.data  # set in an audit's rerun: read that, never the config's path
        if verified is not None:
            verified.check_config_path(self.cfg.data)  # refuses a config that names other data
        if self.cfg.data is not None:
            path = verified.paths()[0] if verified is not None else Path(self.cfg.data).expanduser().resolve()
            table = torch.from_numpy(np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32))
        else:
            gen = self.ctx.generator("data")
            x = torch.randn(64, 4, generator=gen)
            table = torch.cat([x, x @ torch.tensor([[0.5], [-1.0], [2.0], [0.25]]) + 0.1], dim=1)
        n_val = max(1, int(len(table) * self.cfg.val_fraction))
        self.train_rows, self.val_rows = table[:-n_val], table[-n_val:]
        train_tokens, extra = len(self.train_rows), {"columns": int(table.shape[1])}
        if self.cfg.data is not None:
            return DataSummary.from_files(path.parent, [path.name], extra=extra, train_tokens=train_tokens,
                                          val_tokens=n_val)
        return DataSummary.generated("tinymlp:linear", table, extra=extra, train_tokens=train_tokens, val_tokens=n_val)

    def build(self) -> None:
        """The MLP (initialised from the seeded global RNG) and AdamW."""
        features = self.train_rows.shape[1] - 1
        self.model = torch.nn.Sequential(
            torch.nn.Linear(features, self.cfg.hidden), torch.nn.Tanh(), torch.nn.Linear(self.cfg.hidden, 1)
        ).to(self.ctx.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr)

    def _batch(self) -> torch.Tensor:
        rows = torch.randint(len(self.train_rows), (self.cfg.batch_size,), generator=self.batches)
        return self.train_rows[rows]

    def train_step(self, step: int) -> StepOutput:
        """One AdamW step on a batch drawn with the dedicated generator."""
        batch = self._batch()
        x, y = batch[:, :-1].to(self.ctx.device), batch[:, -1:].to(self.ctx.device)
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = grad_norm(self.model.parameters())
        self.optimizer.step()
        return StepOutput(
            loss=loss.item(), lr=self.cfg.lr, grad_norm=norm, tokens=len(batch), batch=batch_fingerprint(batch)
        )

    @torch.no_grad()
    def validate(self) -> float:
        """MSE on the fixed validation rows; no randomness."""
        x, y = self.val_rows[:, :-1].to(self.ctx.device), self.val_rows[:, -1:].to(self.ctx.device)
        return torch.nn.functional.mse_loss(self.model(x), y).item()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Weights, AdamW state and the batch generator."""
        state = {f"model.{k}": v.detach().clone() for k, v in self.model.state_dict().items()}
        state.update(state_dict_tensors(self.optimizer.state_dict(), "optim."))
        state["gen.batches"] = generator_state_tensor(self.batches)
        return state

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore everything :meth:`state_tensors` saved."""
        self.model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        self.optimizer.load_state_dict(load_state_dict_tensors(tensors, "optim."))
        load_generator_state_tensor(self.batches, tensors["gen.batches"])


# -- variants that each break one part of the contract --------------------------------------------
class NaNLossTrainer(TinyMLPTrainer):
    """Returns a NaN loss at step 3."""

    def train_step(self, step: int) -> StepOutput:
        out = super().train_step(step)
        return replace(out, loss=float("nan")) if step == 3 else out


class ForgetfulTrainer(TinyMLPTrainer):
    """Saves its batch generator but does not restore it on resume."""

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        self.optimizer.load_state_dict(load_state_dict_tensors(tensors, "optim."))


class NoisyTrainer(TinyMLPTrainer):
    """Nondeterministic: nudges its weights after each step with noise from the operating system
    (the batches stay the same; only the numbers drift)."""

    @torch.no_grad()
    def train_step(self, step: int) -> StepOutput:
        with torch.enable_grad():
            out = super().train_step(step)
        for param in self.model.parameters():
            raw = np.frombuffer(os.urandom(4 * param.numel()), dtype=np.uint32).astype(np.float32)
            param.add_(5e-4 * torch.from_numpy(raw / 2**32).reshape(param.shape))
        return out


class VersionedTrainer(TinyMLPTrainer):
    """Declares a version, which counts only where no installed distribution provides the class."""

    version = "0.9.dev1"
