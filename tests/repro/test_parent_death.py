"""Killing the parent stops the job (issue 18, item 5).

Real runs, real signals: ``kill -9`` of ``repro run`` while its training process is training (a
long smoke run that checkpoints every 2 steps) must leave no descendant alive, so nothing writes
into the run folder after its lock is gone; a second run to the same ``--out`` then starts afresh
from nothing the orphan made. The same for the elastic agent of a distributed run, killed
directly: its ranks die with it. SIGTERM to ``repro run`` cleans up like Ctrl-C (exit 130).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro.records.manifest_file import run_folder

psutil = pytest.importorskip("psutil")

LONG = ["smoke", "--threads", "1", "--steps", "100000", "--set", "checkpoint_every=2", "--set", "eval_every=50000"]


def _start(out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "repro", "run", *LONG, *extra, "--out", str(out)],
                            cwd=out.parent, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _wait_for(predicate: object, what: str, proc: subprocess.Popen[str]) -> None:
    """Poll (bounded, no timing asserted) until ``predicate()`` holds."""
    for _ in range(1200):
        if predicate():  # type: ignore[operator]
            return
        if proc.poll() is not None:
            raise AssertionError(f"repro run ended before {what}: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _training(out: Path) -> bool:
    return (run_folder(out).with_name(run_folder(out).name + ".incomplete") / "checkpoints" / "step-000002").is_dir()


def _all_gone(pids: list[int], proc: subprocess.Popen[str]) -> None:
    for _ in range(300):  # a bounded poll: the kernel's parent-death signal is immediate
        if not _alive(pids):
            return
        time.sleep(0.1)
    for pid in _alive(pids):
        os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"descendants {pids} outlived their parent")


def _checkpoints(out: Path) -> set[str]:
    folder = run_folder(out).with_name(run_folder(out).name + ".incomplete") / "checkpoints"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_kill_9_of_repro_run_kills_its_training_process(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    proc = _start(out)
    try:
        _wait_for(lambda: _training(out), "the first checkpoint", proc)
        tree = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert tree
        os.kill(proc.pid, signal.SIGKILL)  # the parent only, not its group
        proc.wait()
        _all_gone(tree, proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    after = _checkpoints(out)
    # Nothing is left to write: a second run to the same --out starts afresh and owns the folder.
    again = subprocess.run([sys.executable, "-m", "repro", "run", "smoke", "--threads", "1", "--out", str(out)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert after  # the orphan-free run had checkpointed before it was killed
    assert {p.name for p in (run_folder(out) / "checkpoints").iterdir()} == {"step-000010", "step-000020"}


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["repro run", "agent"])
def test_kill_9_in_a_distributed_run_leaves_no_rank(victim: str, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    proc = _start(out, "--nproc", "2")
    try:
        _wait_for(lambda: _training(out), "the first checkpoint", proc)
        children = psutil.Process(proc.pid).children()
        agent = next(c for c in children if "repro.running.agent" in " ".join(c.cmdline()))
        ranks = [p.pid for p in agent.children(recursive=True)]
        assert len([p for p in ranks if "repro.running.worker" in " ".join(psutil.Process(p).cmdline())]) == 2
        os.kill(proc.pid if victim == "repro run" else agent.pid, signal.SIGKILL)
        _all_gone([*ranks, agent.pid] if victim == "repro run" else ranks, proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_sigterm_cleans_up_like_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    proc = _start(out)
    try:
        _wait_for(lambda: _training(out), "the first checkpoint", proc)
        tree = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not _alive(tree)
    assert not out.with_name(".run.json.lock").exists()
    # It had a complete checkpoint: the marker stays so that --resume can continue it.
    assert out.with_name("run.json.incomplete").exists()
    assert not list(run_folder(out).parent.glob(".*.tmp"))
