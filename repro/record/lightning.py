"""``ReproCallback`` for a user's own ``lightning.Trainer``: exact per-step losses, checkpoints.

::

    from repro import record
    from repro.record.lightning import ReproCallback

    record.seed()                                   # before the model is built
    record.data("data/train.txt")
    trainer = L.Trainer(..., callbacks=[ReproCallback(every_n_steps=10)])

Each optimizer step is reported with the loss ``training_step`` returned (exact, not a logged
average), the learning rate the step used, the gradient norm before clipping, and the batch's
fingerprint. The validation metric (``val_metric``, default ``val_loss``) is reported after each
validation run, and every ``every_n_steps`` steps (and at the end) the module, optimizers and
schedulers are checkpointed as safetensors, on every rank of a DDP run (replicas compared). Use
``accumulate_grad_batches=1``: with accumulation the loss of a step is not one batch's.
Resuming a Lightning run mid-way (``--resume``, spot-checks) is not supported: Lightning's loop
state is its own; audit the whole run.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from repro import record
from repro.record._batches import batch_items, grad_norm


class ReproCallback(pl.Callback):
    """Report a ``lightning.Trainer``'s steps, validation and checkpoints to :mod:`repro.record`."""

    def __init__(self, every_n_steps: int = 10, val_metric: str = "val_loss") -> None:
        if every_n_steps < 1:
            raise ValueError("every_n_steps must be at least 1")
        self.every_n_steps = every_n_steps
        self.val_metric = val_metric
        self._lr = 0.0
        self._norm = 0.0
        self._reported = 0  # trainer.global_step at the last reported step
        self._validated = -1

    def _state(self, trainer: pl.Trainer, module: pl.LightningModule) -> dict[str, Any]:
        state: dict[str, Any] = {"module": module}
        for i, optimizer in enumerate(trainer.optimizers):
            state[f"optimizer{i}"] = optimizer
        for i, config in enumerate(trainer.lr_scheduler_configs):
            state[f"scheduler{i}"] = config.scheduler
        return state

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        """Capture what the step uses: the learning rate now, the gradients before clipping."""
        if record.active():
            self._lr = float(optimizer.param_groups[0]["lr"])
            self._norm = grad_norm(pl_module.parameters())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        """Report the optimizer step this batch made (if it made one) and checkpoint on cadence."""
        if not record.active() or trainer.global_step == self._reported:
            return
        self._reported = trainer.global_step
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        record.step(loss, lr=self._lr, grad_norm=self._norm, tokens=batch_items(batch), batch=batch)
        if trainer.global_step % self.every_n_steps == 0:
            record.checkpoint(self._state(trainer, pl_module))
        if record.stopping():
            trainer.should_stop = True

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Report the validation metric (aggregated over the epoch by now) once per step it is
        computed at, not the sanity check's."""
        if not record.active() or trainer.sanity_checking or trainer.global_step == 0:
            return
        value = trainer.callback_metrics.get(self.val_metric)
        if value is not None and trainer.global_step != self._validated:
            self._validated = trainer.global_step
            record.validation(value)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Checkpoint the final state (skipped when the last step was just checkpointed)."""
        if record.active():
            record.checkpoint(self._state(trainer, pl_module))
