"""``ReproCallback`` for a user's own ``transformers.Trainer``: exact per-step losses, checkpoints.

::

    from repro import record
    from repro.record.transformers import ReproCallback

    seed = record.seed()                            # before the model is built
    record.data("data/train.txt")
    args = TrainingArguments(..., seed=seed)        # the Trainer re-seeds and shuffles with args.seed
    Trainer(model, args, ..., callbacks=[ReproCallback(every_n_steps=10)]).train()

The loss of each optimizer step is the one the model computed in its training forward (a forward
hook reads ``outputs.loss``), not the Trainer's logging average; the batch fingerprint is of the
forward's ``input_ids``. The learning rate is the one the optimizer step uses; the gradient norm is
read just before the step, so after the Trainer's clipping (``max_grad_norm``). ``eval_loss`` is
reported after each evaluation. Every ``every_n_steps`` steps (and at the end) the model, optimizer
and scheduler are checkpointed as safetensors. Use ``gradient_accumulation_steps=1`` (one batch
per step). Resuming mid-way (``--resume``, spot-checks) is not supported: audit the whole run.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from repro import record
from repro.record._batches import batch_items, grad_norm


class ReproCallback(TrainerCallback):
    """Report a ``transformers.Trainer``'s steps, evaluation and checkpoints to :mod:`repro.record`."""

    def __init__(self, every_n_steps: int = 10) -> None:
        if every_n_steps < 1:
            raise ValueError("every_n_steps must be at least 1")
        self.every_n_steps = every_n_steps
        self._loss: Any = None
        self._inputs: Any = None
        self._lr = 0.0
        self._norm = 0.0
        self._hook: Any = None
        self._checkpointed = 0

    def _forward(self, module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if module.training and getattr(output, "loss", None) is not None:
            self._loss = output.loss.detach()
            self._inputs = kwargs.get("input_ids", args[0] if args else None)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, *,
                       model: Any = None, **kwargs: Any) -> None:
        """Start reading the training forward's loss."""
        if record.active() and model is not None and self._hook is None:
            if args.gradient_accumulation_steps != 1:
                raise ValueError("repro.record.transformers.ReproCallback needs gradient_accumulation_steps=1 "
                                 "(one batch, one exact loss per step)")
            self._hook = model.register_forward_hook(self._forward, with_kwargs=True)

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, *,
                              optimizer: Any = None, model: Any = None, **kwargs: Any) -> None:
        """Capture the learning rate this step uses and the (clipped) gradient norm."""
        if record.active() and optimizer is not None:
            self._lr = float(optimizer.param_groups[0]["lr"])
            self._norm = grad_norm(model.parameters()) if model is not None else 0.0

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, *,
                    model: Any = None, optimizer: Any = None, lr_scheduler: Any = None, **kwargs: Any) -> None:
        """Report the step; checkpoint on cadence; stop when an audit has its steps."""
        if not record.active():
            return
        if self._loss is None:
            raise RuntimeError("ReproCallback saw no training loss: the model must return outputs.loss")
        inputs = self._inputs
        record.step(self._loss, lr=self._lr, grad_norm=self._norm,
                    tokens=batch_items(inputs) if inputs is not None else None, batch=inputs)
        if state.global_step % self.every_n_steps == 0:
            self._save(state, model, optimizer, lr_scheduler)
        if record.stopping():
            control.should_training_stop = True

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, *,
                    metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        """Report ``eval_loss`` after the step it was computed at."""
        if record.active() and metrics and "eval_loss" in metrics and state.global_step > 0:
            record.validation(metrics["eval_loss"])

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, *,
                     model: Any = None, optimizer: Any = None, lr_scheduler: Any = None, **kwargs: Any) -> None:
        """Checkpoint the final state; stop reading the forward."""
        if record.active():
            self._save(state, model, optimizer, lr_scheduler)
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _save(self, state: TrainerState, model: Any, optimizer: Any, scheduler: Any) -> None:
        if state.global_step == self._checkpointed or model is None:
            return
        self._checkpointed = state.global_step
        items: dict[str, Any] = {"model": model}
        if optimizer is not None:
            items["optimizer"] = optimizer
        if scheduler is not None:
            items["scheduler"] = scheduler
        record.checkpoint(items)
