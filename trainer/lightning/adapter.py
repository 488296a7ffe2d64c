"""The PyTorch Lightning adapter: a LightningModule plus a LightningDataModule as a repro trainer.

Design: repro's loop drives the module's hooks, instead of running ``pl.Trainer`` with a
callback. One :meth:`LightningTrainer.train_step` is one Lightning optimizer step — fetch the next
batch, ``training_step``, ``zero_grad``, ``backward``, optional norm clipping, ``optimizer.step``,
the scheduler if it is due — so records are step-exact, a checkpoint holds everything (module,
optimizer, scheduler, data order and position, repro's global RNG states) and resume continues on
the very next batch. ``pl.Trainer`` owns its loop, its restart logic and its checkpoint format;
pausing it after every batch would need a second thread and replaying its loop state.

What it supports: automatic optimization with one optimizer and at most one scheduler (``step``
or ``epoch`` interval); ``training_step`` returning a loss or ``{"loss": ...}``;
``validation_step`` returning a loss or logging ``val_metric``; the batch-transfer,
``on_train_*``, ``on_before_*``/``on_after_backward``, ``on_validation_*`` and
``on_save_checkpoint``/``on_load_checkpoint`` hooks; map-style datasets. ``docs/plugins.md`` lists
what it does not (manual optimization, several optimizers, gradient accumulation, precision
plugins, iterable datasets, ``trainer.*`` beyond :data:`~repro.trainer.lightning.loop.SUPPORTED_TRAINER_ATTRIBUTES`).

Lightning stays optional: the package (``trainer/lightning/__init__.py``) only checks that it is
installed; the user's module imports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator

from repro.errors import InputError, TrainerNotFoundError
from repro.torch_state import (
    generator_state_tensor,
    grad_norm,
    load_generator_state_tensor,
    load_state_dict_tensors,
    state_dict_tensors,
)
from repro.trainer.lightning.data import BatchSource, UnsupportedLoaderError
from repro.trainer.lightning.loop import LoopView, MetricLog, OptimizerSetup, UnsupportedModuleError, optimizer_setup
from repro.trainer_api import (
    IMPORT_REFERENCE,
    DataSummary,
    StepOutput,
    TrainerConfig,
    TrainerContext,
    batch_fingerprint,
)


class LightningConfig(TrainerConfig):
    """Which LightningModule and LightningDataModule to train, with their arguments."""

    module: str = Field(description="The LightningModule class, 'package.module:Class'.",
                        json_schema_extra=IMPORT_REFERENCE)
    module_args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the module.")
    datamodule: str = Field(description="The LightningDataModule class, 'package.module:Class'.",
                            json_schema_extra=IMPORT_REFERENCE)
    datamodule_args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the datamodule.")
    data: str | None = Field(
        None, description="File or folder the datamodule reads: hashed into the manifest, and passed "
        "to the datamodule as keyword `data_arg`. None: the datasets' contents are hashed instead.",
    )
    data_arg: str = Field("data_dir", description="Datamodule keyword that receives `data`.")
    gradient_clip_val: float | None = Field(None, gt=0.0, description="Clip the gradient norm (as pl.Trainer does).")
    val_metric: str = Field("val_loss", description="What validation_step logs (or returns) as its loss.")
    limit_val_batches: int | None = Field(None, ge=1, description="Validate on the first N batches only.")
    steps: int = Field(100, ge=1)

    @field_validator("module", "datamodule")
    @classmethod
    def _reference(cls, value: str) -> str:
        module, sep, attr = value.partition(":")
        if not (module and sep and attr):
            raise ValueError(f"{value!r} must look like 'package.module:Class'")
        return value


def _import_class(reference: str, what: str) -> type:
    module_name, _, attr = reference.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrainerNotFoundError(
            f"cannot import the {what} {reference!r} ({exc}); install its package or fix PYTHONPATH"
        ) from exc
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise TrainerNotFoundError(f"module {module_name!r} has no {what} {attr!r}")
    found: type = obj  # by the config's contract a class; instantiating it reports anything else
    return found


def _call_hook(obj: Any, name: str, *args: Any) -> Any:
    hook = getattr(obj, name, None)
    return hook(*args) if callable(hook) else None


def _loss_of(output: Any, key: str, what: str) -> torch.Tensor | None:
    """The loss in what a step hook returned: a tensor, ``{key: ...}`` or ``{"loss": ...}``, or None."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        value = output.get(key, output.get("loss"))
        return value if isinstance(value, torch.Tensor) else None
    if output is None:
        return None
    raise ValueError(f"{what} returned {type(output).__name__}; return a loss tensor or a dict holding one")


class LightningTrainer:
    """Runs a LightningModule + LightningDataModule under repro (entry point ``lightning``).

    Subclass it to ship presets for your own module (``presets`` returning configs with
    ``module``/``datamodule`` set) and register the subclass under ``repro.trainers``.
    """

    config_model = LightningConfig

    @classmethod
    def presets(cls) -> Mapping[str, Mapping[str, Any]]:
        """None: name your classes with ``--set module=... --set datamodule=...`` or subclass."""
        return {}

    def __init__(self, config: LightningConfig, context: TrainerContext) -> None:
        self.cfg = config
        self.ctx = context
        self.order_generator = context.generator("lightning-batches")
        self.order = torch.empty(0, dtype=torch.int64)
        self.global_step = self.epoch = self.position = 0
        self.metrics = MetricLog()

    # -- data ---------------------------------------------------------------------------------
    def prepare_data(self) -> DataSummary:
        """Build the datamodule, run its ``prepare_data`` and ``setup("fit")``, read its loaders."""
        cfg = self.cfg
        args = dict(cfg.datamodule_args)
        if self.ctx.data is not None:  # an audit's rerun: the verified location, never the config's path
            data_path = self.ctx.data.check_config_path(cfg.data)
        else:
            data_path = Path(cfg.data).expanduser().resolve() if cfg.data else None
        if data_path is not None:
            if not data_path.exists():
                raise InputError(f"--data {cfg.data}: no such file or folder")
            args[cfg.data_arg] = str(data_path)
        self.datamodule = _import_class(cfg.datamodule, "LightningDataModule")(**args)
        _call_hook(self.datamodule, "prepare_data")
        _call_hook(self.datamodule, "setup", "fit")
        try:
            self.train_source = BatchSource.from_loader(self.datamodule.train_dataloader(), "train_dataloader()")
            self.val_source = BatchSource.from_loader(self.datamodule.val_dataloader(), "val_dataloader()")
        except UnsupportedLoaderError as exc:
            raise InputError(f"{cfg.datamodule}: {exc}") from exc
        if self.train_source.batches_per_epoch == 0:
            raise InputError(f"{cfg.datamodule}: the training set has fewer examples than one batch")
        extra = {
            "datamodule": cfg.datamodule,
            "train_batch_size": self.train_source.batch_size,
            "shuffle": self.train_source.shuffle,
            "drop_last": self.train_source.drop_last,
            "loader_settings_not_applied": list(self.train_source.ignored + self.val_source.ignored),
        }
        train_tokens, val_tokens = len(self.train_source), len(self.val_source)
        if data_path is None:
            train, val = self.train_source.content_sha256(), self.val_source.content_sha256()
            extra.update(train_sha256=train, val_sha256=val)
            return DataSummary.generated(cfg.datamodule, [train, val], extra=extra,
                                         train_tokens=train_tokens, val_tokens=val_tokens)
        if data_path.is_file():
            return DataSummary.from_files(data_path.parent, [data_path.name], extra=extra,
                                          train_tokens=train_tokens, val_tokens=val_tokens)
        names = sorted(p.relative_to(data_path).as_posix() for p in data_path.rglob("*") if p.is_file())
        return DataSummary.from_files(data_path, names, extra=extra, train_tokens=train_tokens, val_tokens=val_tokens)

    # -- model --------------------------------------------------------------------------------
    def build(self) -> None:
        """Build the module (global RNGs are seeded), attach the loop view, configure the optimizer."""
        cfg = self.cfg
        self.module = _import_class(cfg.module, "LightningModule")(**cfg.module_args)
        for hook in ("training_step", "configure_optimizers"):
            if not callable(getattr(self.module, hook, None)):
                raise InputError(f"{cfg.module} has no {hook}; it must be a LightningModule")
        if getattr(self.module, "automatic_optimization", True) is False:
            raise InputError(f"{cfg.module} uses manual optimization, which the adapter does not support")
        self.view = LoopView(self.module, self.datamodule, cfg.steps)
        self.module.trainer = self.view
        self.module.log = self.metrics.hook()  # instance attribute: shadows LightningModule.log
        _call_hook(self.module, "setup", "fit")
        _call_hook(self.module, "configure_model")
        self.module.to(self.ctx.device)
        try:
            self.opt: OptimizerSetup = optimizer_setup(self.module.configure_optimizers())
        except UnsupportedModuleError as exc:
            raise InputError(f"{cfg.module}: {exc}") from exc
        _call_hook(self.module, "on_fit_start")
        _call_hook(self.module, "on_train_start")
        self.module.train()

    def _to_device(self, batch: Any) -> Any:
        """The module's batch-transfer hooks, as Lightning calls them (dataloader index 0)."""
        module = self.module
        if hasattr(module, "on_before_batch_transfer"):
            batch = module.on_before_batch_transfer(batch, 0)
        if hasattr(module, "transfer_batch_to_device"):
            batch = module.transfer_batch_to_device(batch, self.ctx.device, 0)
        if hasattr(module, "on_after_batch_transfer"):
            batch = module.on_after_batch_transfer(batch, 0)
        return batch

    # -- the loop -----------------------------------------------------------------------------
    def train_step(self, step: int) -> StepOutput:
        """One Lightning optimizer step on the next batch of the seeded epoch order."""
        module, optimizer = self.module, self.opt.optimizer
        if self.position == 0:
            self.order = self.train_source.epoch_order(self.order_generator)
            _call_hook(module, "on_train_epoch_start")
        batch_idx = self.position
        batch, size = self.train_source.batch(self.order, batch_idx)
        fingerprint = batch_fingerprint(batch)
        batch = self._to_device(batch)
        self.view.global_step, self.view.current_epoch, self.view.training = self.global_step, self.epoch, True
        _call_hook(module, "on_train_batch_start", batch, batch_idx)
        lr = float(optimizer.param_groups[0]["lr"])
        output = module.training_step(batch, batch_idx)
        loss = _loss_of(output, "loss", "training_step")
        if loss is None:
            raise InputError(
                f"{self.cfg.module}.training_step returned no loss at step {step}; skipping is not supported"
            )
        _call_hook(module, "on_before_zero_grad", optimizer)
        optimizer.zero_grad(set_to_none=True)
        _call_hook(module, "on_before_backward", loss)
        if hasattr(module, "backward"):
            module.backward(loss)
        else:
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        _call_hook(module, "on_after_backward")
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        norm = grad_norm(parameters)
        _call_hook(module, "on_before_optimizer_step", optimizer)
        if self.cfg.gradient_clip_val is not None:
            torch.nn.utils.clip_grad_norm_(parameters, self.cfg.gradient_clip_val)
        optimizer.step()
        self.global_step += 1
        self.view.global_step = self.global_step
        _call_hook(module, "on_train_batch_end", output, batch, batch_idx)
        if self.opt.interval == "step" and self.global_step % self.opt.frequency == 0:
            self._scheduler_step()
        self.position += 1
        if self.position == self.train_source.batches_per_epoch:
            _call_hook(module, "on_train_epoch_end")
            self.epoch += 1
            self.position = 0
            if self.opt.interval == "epoch" and self.epoch % self.opt.frequency == 0:
                self._scheduler_step()
        return StepOutput(loss=loss.detach().item(), lr=lr, grad_norm=norm, tokens=size, batch=fingerprint)

    def _scheduler_step(self) -> None:
        if self.opt.scheduler is None:
            return
        if hasattr(self.module, "lr_scheduler_step"):
            self.module.lr_scheduler_step(self.opt.scheduler, None)
        else:
            self.opt.scheduler.step()

    @torch.no_grad()
    def validate(self) -> float:
        """Size-weighted mean of ``validation_step``'s loss over the validation set, in order."""
        module, view = self.module, self.view
        module.eval()
        view.training, view.validating = False, True
        self.metrics.clear()
        _call_hook(module, "on_validation_epoch_start")
        total = count = 0.0
        for batch_idx, loaded, size in self.val_source.sequential_batches(self.cfg.limit_val_batches):
            batch = self._to_device(loaded)
            self.metrics.clear()
            output = module.validation_step(batch, batch_idx)
            loss = _loss_of(output, self.cfg.val_metric, "validation_step")
            value = float(loss) if loss is not None else self.metrics.values.get(self.cfg.val_metric)
            if value is None:
                raise InputError(
                    f"{self.cfg.module}.validation_step neither returned a loss nor logged "
                    f"{self.cfg.val_metric!r}; set --set val_metric=NAME"
                )
            total += value * size
            count += size
        self.metrics.clear()
        _call_hook(module, "on_validation_epoch_end")
        epoch_value = self.metrics.values.get(self.cfg.val_metric)  # logged at epoch end: it wins
        view.validating = False
        module.train()
        return epoch_value if epoch_value is not None else total / count

    # -- checkpoints --------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Module weights, optimizer and scheduler state, data order and position, hook state."""
        state = {f"model.{k}": v.detach().clone() for k, v in self.module.state_dict().items()}
        state.update(state_dict_tensors(self.opt.optimizer.state_dict(), "optim."))
        if self.opt.scheduler is not None:
            state.update(state_dict_tensors(self.opt.scheduler.state_dict(), "sched."))
        hooks: dict[str, Any] = {}
        _call_hook(self.module, "on_save_checkpoint", hooks)
        if hooks:
            state.update(state_dict_tensors(hooks, "hooks."))
        state["data.generator"] = generator_state_tensor(self.order_generator)
        state["data.order"] = self.order.clone()
        state["loop.counters"] = torch.tensor([self.global_step, self.epoch, self.position], dtype=torch.int64)
        return state

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_tensors`; the next step continues on the next batch."""
        model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.module.load_state_dict(model)
        self.opt.optimizer.load_state_dict(load_state_dict_tensors(tensors, "optim."))
        if self.opt.scheduler is not None:
            self.opt.scheduler.load_state_dict(load_state_dict_tensors(tensors, "sched."))
        if "hooks.__meta__" in tensors:
            _call_hook(self.module, "on_load_checkpoint", load_state_dict_tensors(tensors, "hooks."))
        load_generator_state_tensor(self.order_generator, tensors["data.generator"])
        self.order = tensors["data.order"].clone()
        self.global_step, self.epoch, self.position = (int(x) for x in tensors["loop.counters"].tolist())
        self.view.global_step, self.view.current_epoch = self.global_step, self.epoch
