"""A process that joins a run's rendezvous can at worst make the run fail (issue 18, item 1).

Real processes: a repro rank and a stranger in one gloo process group on localhost. The stranger
sends a pickle that, unpickled, creates a marker file; the repro rank must refuse it without ever
unpickling it (the marker stays absent). The control test shows the payload is live: unpickling it
does create the marker. The stores repro's rendezvous creates listen on the endpoint's address only.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from repro.errors import PeerProtocolError
from repro.records.manifest_file import run_folder
from repro.running import exchange
from repro.running.agent import check_state
from repro.running.distributed import MAX_NODE_REPORT_BYTES, _NodeReport


class _Marker:
    """Unpickling this creates a file: the harmless stand-in for code a peer would run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def _payload(marker: Path) -> bytes:
    return pickle.dumps(_Marker(str(marker)))


def test_the_payload_is_live(tmp_path: Path) -> None:
    """Control: the bytes the stranger sends do create the marker when unpickled."""
    marker = tmp_path / "control"
    handle = pickle.loads(_payload(marker))
    handle.close()
    assert marker.exists()


def test_a_frame_is_parsed_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    body = _payload(marker)
    frame = len(body).to_bytes(8, "big") + body + bytes(64)
    with pytest.raises(PeerProtocolError, match="not a valid _NodeReport") as caught:
        exchange.decode(frame, _NodeReport, 1)
    assert str(marker) not in str(caught.value)  # the stranger's bytes are never quoted
    with pytest.raises(PeerProtocolError, match="claiming"):
        exchange.decode((10**9).to_bytes(8, "big") + bytes(16), _NodeReport, 1)
    extra = b'{"node_rank":0,"rank":1,"hostname":"h","environment":null,"extra":1}'
    with pytest.raises(PeerProtocolError):
        exchange.decode(len(extra).to_bytes(8, "big") + extra, _NodeReport, 1)
    assert not marker.exists()


def test_the_rendezvous_state_check_refuses_foreign_classes(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from torch.distributed.elastic.rendezvous.dynamic_rendezvous import _NodeDesc, _RendezvousState

    state = _RendezvousState()
    node = _NodeDesc("127.0.0.1", 1, 0)
    state.participants[node] = 0
    state.last_heartbeats[node] = datetime.now(timezone.utc)
    check_state(pickle.dumps(state))  # what torch writes passes
    marker = tmp_path / "marker"
    with pytest.raises(pickle.UnpicklingError):
        check_state(_payload(marker))
    assert not marker.exists()


_RANK = textwrap.dedent("""
    import os, sys, datetime
    import torch.distributed as dist
    role, port, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0 if role != "peer" else 1,
                            world_size=2, timeout=datetime.timedelta(seconds=60))
    if role == "peer" and sys.argv[4] == "data":  # a genuine repro rank on a node with other data
        from repro.records.manifest import RunSettings
        from repro.running import distributed
        from repro.running.distributed import RankInfo
        info = RankInfo(rank=1, local_rank=0, world_size=2, node_rank=1, leader_rank=0, backend="gloo")
        try:
            distributed.describe(info, RunSettings(nproc=1, nnodes=2), None, "test", data=["b" * 64, ""])
        except Exception:
            pass
        os._exit(0)
    if role == "peer":  # a stranger: what all_gather_object would unpickle, in repro's frame and the old way
        import pickle, signal, torch
        class Marker:
            def __reduce__(self):
                return (open, (marker, "w"))
        signal.alarm(20)
        mode = sys.argv[4]
        if mode == "frame":
            body = pickle.dumps(Marker())
            size = int(sys.argv[5])
            frame = len(body).to_bytes(8, "big") + body + bytes(size - 8 - len(body))
            mine = torch.frombuffer(bytearray(frame), dtype=torch.uint8)
            dist.all_gather([torch.empty_like(mine) for _ in range(2)], mine)
        else:
            dist.all_gather_object([None, None], Marker())
        os._exit(0)
    from repro.errors import ReproError
    from repro.records.manifest import RunSettings
    from repro.running import distributed
    from repro.running.distributed import RankInfo
    info = RankInfo(rank=0, local_rank=0, world_size=2, node_rank=0, leader_rank=0, backend="gloo")
    try:
        if sys.argv[4] in ("frame", "data"):
            from repro.capture.environment import capture_environment
            distributed.describe(info, RunSettings(nproc=1, nnodes=2), capture_environment(), "test",
                                 data=["a" * 64, ""])
        else:
            distributed.check_same_start(info, 0)
    except ReproError as exc:
        print("refused:", type(exc).__name__, exc)
        os._exit(4)
    except Exception as exc:
        print("failed:", type(exc).__name__)
        os._exit(5)
    print("accepted")
    os._exit(0)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("mode", ["frame", "old-protocol", "data"])
def test_a_stranger_in_the_process_group_makes_the_rank_fail_never_run_code(mode: str, tmp_path: Path) -> None:
    """A real repro rank (describe / check_same_start) and a real stranger in one gloo group; and
    ("data") a genuine rank of a node that prepared other data: refused, not signed."""
    marker = tmp_path / "marker"
    script = tmp_path / "rank.py"
    script.write_text(_RANK)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = [str(port), str(marker), mode, str(MAX_NODE_REPORT_BYTES)]
    ours = subprocess.Popen([sys.executable, str(script), "repro", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peer = subprocess.Popen([sys.executable, str(script), "peer", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out, _ = ours.communicate(timeout=120)
    finally:
        peer.kill()
        peer.wait()
    assert ours.returncode in (4, 5), out  # the rank failed: the stranger's data was refused
    assert "accepted" not in out
    if mode == "frame":
        assert "refused: PeerProtocolError" in out and str(marker) not in out
    if mode == "data":
        assert "refused: UsageError" in out and "prepared different data" in out
    assert not marker.exists()  # never unpickled


def _listening(pid: int) -> list[tuple[str, int]]:
    psutil = pytest.importorskip("psutil")
    found = []
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            connections = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        found += [(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]
    return found


@pytest.mark.slow
def test_the_rendezvous_listens_on_the_endpoint_only_and_sigterm_cleans_up(tmp_path: Path) -> None:
    """Node 0 of a two-node run waits for its peer: every socket its tree listens on is bound to
    the endpoint's address (127.0.0.1), not every interface; SIGTERM then stops it like Ctrl-C."""
    port = _free_port()
    out = tmp_path / "run.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "repro", "run", "smoke", "--threads", "1", "--nnodes", "2",
         "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-timeout", "120", "--out", str(out)],
        cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        import psutil  # type: ignore[import-untyped]

        sockets: list[tuple[str, int]] = []
        for _ in range(600):  # until the rendezvous store listens (no timed assertion: a bounded poll)
            sockets = _listening(proc.pid)
            if any(p == port for _, p in sockets):
                break
            time.sleep(0.1)
        assert any(p == port for _, p in sockets), sockets
        assert all(ip == "127.0.0.1" for ip, _ in sockets), sockets  # never 0.0.0.0 or ::
        tree = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not out.with_name("run.json.incomplete").exists() and not out.with_name(".run.json.lock").exists()
    assert not run_folder(out).exists() and not out.exists()
    for _ in range(100):
        if not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in tree):
            break
        time.sleep(0.1)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in tree)
