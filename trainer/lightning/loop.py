"""What a LightningModule sees of the loop: a stand-in for ``pl.Trainer``, its optimizer setup,
and a record of what it logs.

The adapter drives the module's hooks itself, so ``module.trainer`` is a :class:`LoopView` that
answers the questions modules commonly ask (``global_step``, ``current_epoch``, ``max_steps``,
``is_global_zero``, ...) and names the adapter in the error for anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

SUPPORTED_TRAINER_ATTRIBUTES = (
    "global_step", "current_epoch", "max_steps", "max_epochs", "estimated_stepping_batches",
    "training", "validating", "sanity_checking", "testing", "predicting", "is_global_zero",
    "global_rank", "local_rank", "node_rank", "world_size", "num_nodes", "num_devices",
    "datamodule", "lightning_module", "logger", "loggers", "fast_dev_run", "barebones",
)


class UnsupportedModuleError(ValueError):
    """The module uses a Lightning feature the adapter cannot run deterministically step by step."""


class LoopView:
    """Stands in for ``pl.Trainer`` as ``module.trainer`` while repro's loop drives the module."""

    def __init__(self, module: Any, datamodule: Any, max_steps: int) -> None:
        self.lightning_module = module
        self.datamodule = datamodule
        self.max_steps = max_steps
        self.estimated_stepping_batches = max_steps
        self.max_epochs = -1
        self.global_step = 0
        self.current_epoch = 0
        self.training = False
        self.validating = False
        self.sanity_checking = False
        self.testing = False
        self.predicting = False
        self.is_global_zero = True
        self.global_rank = self.local_rank = self.node_rank = 0
        self.world_size = self.num_nodes = self.num_devices = 1
        self.logger = None
        self.loggers: list[Any] = []
        self.fast_dev_run = False
        self.barebones = False

    def __getattr__(self, name: str) -> Any:
        """Only reached for attributes the stand-in lacks: say so, naming the adapter."""
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"repro's Lightning adapter runs the module without a pl.Trainer; trainer.{name} is not "
            f"available (available: {', '.join(SUPPORTED_TRAINER_ATTRIBUTES)})"
        )


@dataclass
class MetricLog:
    """Collects what the module passes to ``self.log``/``self.log_dict`` (they call ``log``)."""

    values: dict[str, float] = field(default_factory=dict)

    def clear(self) -> None:
        """Forget earlier values."""
        self.values.clear()

    def hook(self) -> Callable[..., None]:
        """A replacement for ``module.log``: keeps the latest value under each name."""

        def log(name: str, value: Any, *args: Any, **kwargs: Any) -> None:
            if isinstance(value, torch.Tensor):
                value = value.detach().float().mean().item()
            if isinstance(value, (int, float)):
                self.values[name] = float(value)

        return log


@dataclass
class OptimizerSetup:
    """The one optimizer and optional scheduler ``configure_optimizers`` returned."""

    optimizer: torch.optim.Optimizer
    scheduler: Any = None
    interval: str = "epoch"
    frequency: int = 1


def _scheduler_config(value: Any) -> tuple[Any, str, int]:
    if isinstance(value, dict):
        unknown = set(value) - {"scheduler", "interval", "frequency", "name", "monitor", "strict"}
        if unknown or "scheduler" not in value:
            raise UnsupportedModuleError(f"lr_scheduler config keys {sorted(value)} are not supported")
        monitored = value.get("monitor") is not None
        if monitored and isinstance(value["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise UnsupportedModuleError("ReduceLROnPlateau (a monitored scheduler) is not supported")
        interval = value.get("interval", "epoch")
        if interval not in ("step", "epoch"):
            raise UnsupportedModuleError(f"lr_scheduler interval {interval!r} must be 'step' or 'epoch'")
        return value["scheduler"], interval, int(value.get("frequency", 1))
    if isinstance(value, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise UnsupportedModuleError("ReduceLROnPlateau (a monitored scheduler) is not supported")
    return value, "epoch", 1


def optimizer_setup(returned: Any) -> OptimizerSetup:
    """Normalise every documented return form of ``configure_optimizers`` with one optimizer."""
    if isinstance(returned, torch.optim.Optimizer):
        return OptimizerSetup(returned)
    if isinstance(returned, dict):
        if "optimizer" not in returned:
            raise UnsupportedModuleError("configure_optimizers returned a dict without 'optimizer'")
        setup = OptimizerSetup(returned["optimizer"])
        if returned.get("lr_scheduler") is not None:
            setup.scheduler, setup.interval, setup.frequency = _scheduler_config(returned["lr_scheduler"])
        return setup
    if isinstance(returned, (list, tuple)):
        if len(returned) == 2 and all(isinstance(part, (list, tuple)) for part in returned):
            optimizers, schedulers = returned
            if len(optimizers) != 1 or len(schedulers) > 1:
                raise UnsupportedModuleError("only one optimizer and at most one scheduler are supported")
            setup = OptimizerSetup(optimizers[0])
            if schedulers:
                setup.scheduler, setup.interval, setup.frequency = _scheduler_config(schedulers[0])
            return setup
        if len(returned) == 1:
            return optimizer_setup(returned[0])
        raise UnsupportedModuleError("only one optimizer is supported (multiple optimizers need manual optimization)")
    raise UnsupportedModuleError(
        f"configure_optimizers returned {type(returned).__name__}; return an optimizer, a dict, or lists"
    )
