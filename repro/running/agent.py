"""The elastic agent repro starts: ``torch.distributed.run`` with a rendezvous that binds where it is told.

``python -m repro.running.agent ARGS`` is ``python -m torch.distributed.run ARGS`` with one more
rendezvous backend, ``repro-c10d``, registered through torch's public handler registry. It is
torch's c10d rendezvous with three differences:

- **Its stores listen on one address.** torch's c10d backend creates its ``TCPStore`` servers (the
  rendezvous store at ``--rdzv-endpoint`` and the store the ranks connect to) on every interface,
  even for ``127.0.0.1``. Here each server gets a socket repro bound to the endpoint's host (the
  rendezvous store) or to ``--local-addr`` (the ranks' store), passed as ``master_listen_fd``.
- **The rendezvous state is checked before torch unpickles it.** torch keeps the rendezvous state
  in the store as a pickle and unpickles what it reads; any process that reaches the store could
  write one that runs code in the agent. Here a state that names anything but torch's rendezvous
  state classes and plain containers is refused (the agent fails) before ``pickle.loads`` sees it.
- **Its join timeout is ``--rdzv-timeout``** (``join_timeout`` in ``--rdzv-conf``, as in torch).

Nothing else of torch's launcher changes; the training processes exchange only checked data
(:mod:`repro.running.exchange`).
"""

from __future__ import annotations

import io
import pickle
import signal
import socket
import sys
from typing import Any

BACKEND = "repro-c10d"
"""The ``--rdzv-backend`` name of repro's rendezvous."""

_ALLOWED_GLOBALS = frozenset({
    ("torch.distributed.elastic.rendezvous.dynamic_rendezvous", "_RendezvousState"),
    ("torch.distributed.elastic.rendezvous.dynamic_rendezvous", "_NodeDesc"),
    ("datetime", "datetime"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
})
"""What torch's rendezvous state pickle may name: its two dataclasses, dates, plain containers."""


class _StateUnpickler(pickle.Unpickler):
    """Loads only the classes of torch's rendezvous state; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"the rendezvous state names a class it may not contain ({module[:80]}.{name[:80]})"
            )
        return super().find_class(module, name)


def check_state(state: bytes) -> None:
    """Raise :class:`pickle.UnpicklingError` unless ``state`` unpickles using only the allowed classes."""
    _StateUnpickler(io.BytesIO(state)).load()


def bound_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket bound to ``host`` (not every interface), for a TCPStore server."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)  # not inheritable (the default): the ranks never hold it
    return sock


def _register() -> None:
    from datetime import timedelta

    import torch.distributed as dist
    from torch.distributed.elastic.rendezvous import RendezvousParameters, rendezvous_handler_registry
    from torch.distributed.elastic.rendezvous.api import RendezvousStateError
    from torch.distributed.elastic.rendezvous.c10d_rendezvous_backend import C10dRendezvousBackend
    from torch.distributed.elastic.rendezvous.dynamic_rendezvous import DynamicRendezvousHandler, RendezvousTimeout
    from torch.distributed.elastic.rendezvous.utils import parse_rendezvous_endpoint

    store_class: Any = dist.TCPStore  # type: ignore[attr-defined]  # not re-exported in torch's stubs
    listeners: list[socket.socket] = []  # kept open for the agent's lifetime

    class CheckedBackend(C10dRendezvousBackend):
        """torch's c10d backend, refusing a state that names anything but the rendezvous classes."""

        def _decode_state(self, base64_state: bytes) -> Any:
            decoded = super()._decode_state(base64_state)
            if decoded is not None:
                try:
                    check_state(decoded[0])
                except Exception as exc:
                    raise RendezvousStateError(
                        "the rendezvous state holds something torch's rendezvous never writes; a process that "
                        "is not a repro node wrote to the rendezvous store"
                    ) from exc
            return decoded

    class BoundHandler(DynamicRendezvousHandler):
        """torch's handler whose store for the ranks listens on this node's address only."""

        def get_backend(self) -> str:
            return BACKEND

        def _create_tcp_store_server(self, master_addr: str, master_port: int) -> Any:
            listener = bound_listener(master_addr, master_port)
            listeners.append(listener)
            return store_class(host_name=master_addr, port=listener.getsockname()[1], is_master=True,
                               multi_tenant=True, master_listen_fd=listener.fileno())

    def create(params: RendezvousParameters) -> Any:
        host, port = parse_rendezvous_endpoint(params.endpoint, default_port=29400)
        is_host = bool(params.get_as_bool("is_host", False))
        timeout = timedelta(seconds=int(params.get_as_int("read_timeout", 60) or 60))
        if is_host:
            listener = bound_listener(host, port)
            listeners.append(listener)
            store = store_class(host, listener.getsockname()[1], is_master=True, multi_tenant=True,
                                timeout=timeout, master_listen_fd=listener.fileno())
        else:
            store = store_class(host, port, is_master=False, multi_tenant=True, timeout=timeout)

        def seconds(name: str) -> timedelta | None:
            value = params.get_as_int(f"{name}_timeout")
            return None if value is None else timedelta(seconds=value)

        return BoundHandler.from_backend(
            params.run_id, store, CheckedBackend(store, params.run_id), params.min_nodes, params.max_nodes,
            params.local_addr, RendezvousTimeout(seconds("join"), seconds("last_call"), seconds("close"),
                                                 seconds("heartbeat")),
        )

    rendezvous_handler_registry.register(BACKEND, create)


def main(argv: list[str] | None = None) -> None:
    """Register repro's rendezvous backend, then run torch's launcher with ``argv``."""
    import os

    from repro.running import lifeline

    lifeline.tie_to_parent(signal.SIGTERM)  # torch's agent stops its ranks on SIGTERM
    os.environ[lifeline.PARENT_ENV] = str(os.getpid())  # the ranks must not outlive this agent
    _register()
    from torch.distributed.run import main as torchrun

    torchrun(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
