"""A tiny OSV-compatible vulnerability service on 127.0.0.1 for tests (stdlib only).

It answers ``POST /v1/query`` the way https://osv.dev's API does for what pip-audit sends
(``{"package": {"name", "ecosystem"}, "version"}``): ``{"vulns": [...]}`` with OSV schema 1.x
records when the package version is listed in ``known``, else ``{}``. Every query is recorded so
tests can check what pip-audit asked. Bound to loopback on a free port; serves from a daemon
thread and is shut down by the context manager.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def osv_record(vuln_id: str, package: str, fixed: str, aliases: list[str], summary: str) -> dict[str, Any]:
    """An OSV schema 1.6 record affecting ``package`` before ``fixed``."""
    return {
        "schema_version": "1.6.0",
        "id": vuln_id,
        "modified": "2026-01-01T00:00:00Z",
        "published": "2026-01-01T00:00:00Z",
        "aliases": aliases,
        "summary": summary,
        "affected": [{
            "package": {"name": package, "ecosystem": "PyPI", "purl": f"pkg:pypi/{package}"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
        }],
    }


@dataclass
class OsvServer:
    """A running fake OSV service: its URL and the queries it received."""

    url: str
    queries: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def serve_osv(known: dict[tuple[str, str], list[dict[str, Any]]], status: int = 200) -> Iterator[OsvServer]:
    """Serve ``known`` ((name, version) -> OSV records) at ``http://127.0.0.1:PORT/v1/query``.

    ``status`` other than 200 makes every query fail with that HTTP status.
    """
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            query = json.loads(self.rfile.read(length) or b"{}")
            received.append(query)
            if self.path != "/v1/query" or status != 200:
                self.send_error(404 if self.path != "/v1/query" else status)
                return
            package = query.get("package", {})
            vulns = known.get((package.get("name"), query.get("version")), [])
            body = json.dumps({"vulns": vulns} if vulns else {}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield OsvServer(url=f"http://127.0.0.1:{server.server_address[1]}/v1/query", queries=received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
