"""Flattening optimizer, scheduler and generator state into named tensors for checkpoints, and back.

Trainers use these so their ``state_tensors`` are plain ``name -> tensor`` maps that safetensors
can store and an audit can compare tensor by tensor. Part of the public plugin API, with
:mod:`repro.trainer_api`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import torch

META = "__meta__"
"""Name (after the prefix) of the tensor that holds a packed state dict's non-tensor values."""


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


def load_generator_state_tensor(generator: torch.Generator, tensor: torch.Tensor) -> None:
    """Restore a generator from :func:`generator_state_tensor`."""
    generator.set_state(tensor.detach().to("cpu", torch.uint8).contiguous())


def grad_norm(parameters: Iterable[torch.nn.Parameter]) -> float:
    """Total L2 norm of the parameters' gradients, without clipping them (0.0 when none)."""
    norms = [torch.linalg.vector_norm(p.grad.detach()) for p in parameters if p.grad is not None]
    if not norms:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms])))


def state_dict_tensors(state: Mapping[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """Pack any ``state_dict()`` (an optimizer's, an LR scheduler's) into named tensors.

    Tensors keep their place in the structure as ``{prefix}{path}`` (e.g. ``optim.state.0.exp_avg``);
    everything else (hyperparameters, counters, tuples, integer keys) goes, exactly, into one
    uint8 tensor ``{prefix}__meta__`` of JSON. :func:`load_state_dict_tensors` inverts it.
    """
    tensors: dict[str, torch.Tensor] = {}

    def encode(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[prefix + path] = value.detach().clone()
            return {"__tensor__": path}
        if isinstance(value, Mapping):
            return {"__dict__": [[key, encode(v, f"{path}.{key}" if path else str(key))] for key, v in value.items()]}
        if isinstance(value, (list, tuple)):
            items = [encode(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
            return {"__tuple__": items} if isinstance(value, tuple) else items
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(
            f"cannot pack a value of type {type(value).__name__!r} at {prefix}{path} into checkpoint tensors"
        )

    meta = json.dumps(encode(dict(state), ""), sort_keys=True).encode("utf-8")
    tensors[prefix + META] = torch.frombuffer(bytearray(meta), dtype=torch.uint8).clone()
    return tensors


def load_state_dict_tensors(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, Any]:
    """The state dict that :func:`state_dict_tensors` packed under ``prefix``, ready for
    ``load_state_dict``."""
    meta = json.loads(bytes(tensors[prefix + META].tolist()).decode("utf-8"))

    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            if "__tensor__" in value:
                return tensors[prefix + value["__tensor__"]].clone()
            if "__tuple__" in value:
                return tuple(decode(v) for v in value["__tuple__"])
            return {key: decode(v) for key, v in value["__dict__"]}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    state: dict[str, Any] = decode(meta)
    return state
