"""Collectives that never unpickle what a peer sends: fixed-layout integers and length-checked JSON.

Anyone who can reach a multi-node run's rendezvous can join it as a rank (the rendezvous id is
printed in every manifest of the config). ``torch.distributed.all_gather_object`` unpickles what
every peer sends, so one such peer would run code inside every training process, which can read
the signing key. The ranks of a repro run therefore exchange only

- fixed-layout ``int64`` tensors (:func:`gather_ints`), and
- JSON bytes in a ``uint8`` tensor of a fixed maximum length (:func:`gather_json`): an 8-byte
  big-endian length, then the UTF-8 JSON, zero padding. The length is checked against the
  maximum, the JSON parsed by a pydantic model with ``extra="forbid"``.

Anything else is a :class:`~repro.errors.PeerProtocolError`: a peer can at worst make the run fail.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from repro.errors import PeerProtocolError

Model = TypeVar("Model", bound=BaseModel)

HEADER_BYTES = 8
"""The length prefix of a JSON message: unsigned, big-endian."""


def _device(backend: str) -> Any:
    import torch

    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def gather_ints(values: list[int], world_size: int, backend: str) -> list[list[int]]:
    """All-gather a fixed number of integers from every rank (``values`` has the same length on all)."""
    import torch
    import torch.distributed as dist

    mine = torch.tensor(values, dtype=torch.int64, device=_device(backend))
    gathered = [torch.empty_like(mine) for _ in range(world_size)]
    dist.all_gather(gathered, mine)
    return [[int(v) for v in t.cpu().tolist()] for t in gathered]


def encode(message: BaseModel, max_bytes: int) -> bytes:
    """The fixed-size frame of ``message``: length prefix, JSON, zero padding to ``max_bytes``."""
    body = message.model_dump_json().encode("utf-8")
    if len(body) > max_bytes - HEADER_BYTES:
        raise PeerProtocolError(
            f"this rank's {type(message).__name__} is {len(body)} bytes, more than the {max_bytes - HEADER_BYTES} "
            "a rank may send; the run cannot describe itself to its peers"
        )
    return len(body).to_bytes(HEADER_BYTES, "big") + body + bytes(max_bytes - HEADER_BYTES - len(body))


def decode(frame: bytes, model: type[Model], rank: int) -> Model:
    """Parse one rank's frame; refuse a bad length, bytes that are not UTF-8 JSON, or another shape.

    The message never quotes the bytes received (they are a stranger's)."""
    length = int.from_bytes(frame[:HEADER_BYTES], "big")
    if length > len(frame) - HEADER_BYTES:
        raise PeerProtocolError(
            f"rank {rank} sent a {model.__name__} claiming {length} bytes in a {len(frame)}-byte frame; "
            "a process that is not a repro rank joined the rendezvous (or the nodes run different repro versions)"
        )
    try:
        return model.model_validate_json(frame[HEADER_BYTES:HEADER_BYTES + length])
    except (ValidationError, ValueError) as exc:
        raise PeerProtocolError(
            f"rank {rank} sent data that is not a valid {model.__name__}; a process that is not a repro rank "
            "joined the rendezvous (or the nodes run different repro versions)"
        ) from exc


def gather_json(message: BaseModel, model: type[Model], world_size: int, backend: str,
                max_bytes: int) -> list[Model]:
    """All-gather ``message`` from every rank as length-checked JSON parsed by ``model``."""
    import torch
    import torch.distributed as dist

    frame = encode(message, max_bytes)
    mine = torch.frombuffer(bytearray(frame), dtype=torch.uint8).to(_device(backend))
    gathered = [torch.empty_like(mine) for _ in range(world_size)]
    dist.all_gather(gathered, mine)
    return [decode(bytes(t.cpu().numpy().tobytes()), model, rank) for rank, t in enumerate(gathered)]
