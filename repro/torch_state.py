"""Flattening optimizer and generator state into named tensors for checkpoints, and back.

Trainers use these so their ``state_tensors`` are plain ``name -> tensor`` maps that safetensors
can store and an audit can compare tensor by tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


def optimizer_state_tensors(
    optimizer: torch.optim.Optimizer, named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    prefix: str = "optim.",
) -> dict[str, torch.Tensor]:
    """Per-parameter optimizer state as ``{prefix}{param}.{key}`` tensors (scalars become 0-d)."""
    out: dict[str, torch.Tensor] = {}
    for name, param in named_parameters:
        for key, value in optimizer.state.get(param, {}).items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            out[f"{prefix}{name}.{key}"] = tensor.detach().clone()
    return out


def load_optimizer_state_tensors(
    optimizer: torch.optim.Optimizer, named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    tensors: Mapping[str, torch.Tensor], prefix: str = "optim.",
) -> None:
    """Restore what :func:`optimizer_state_tensors` saved, onto each parameter's device."""
    for name, param in named_parameters:
        head = f"{prefix}{name}."
        state = {
            key[len(head):]: value.to(param.device) if value.dim() else value.clone()
            for key, value in tensors.items() if key.startswith(head)
        }
        if state:
            optimizer.state[param] = state


def generator_state_tensor(generator: torch.Generator) -> torch.Tensor:
    """A generator's state as a uint8 tensor."""
    return generator.get_state().clone()
