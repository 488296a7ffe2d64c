"""Crash safety of `repro run`: SIGKILL at any point, `--resume`, bit-identical result.

`repro run smoke` runs as a real process in a session of its own; `REPRO_TEST_CRASH_AT`
(:mod:`repro.running.crashpoint`) makes it SIGKILL its whole process group, training child and parent, at
a chosen step, halfway through writing a checkpoint, halfway through writing the manifest, or
between renaming the finished run's folder and its manifest into place. Steps and checkpoints are
drawn at random: the seed is printed, and ``REPRO_TEST_SEED=<seed>`` replays a failure.
The reference is the session's uninterrupted `smoke_run` (same config, checkpoints at 10 and 20).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from repro.cli import main
from repro.records.hashing import sha256_file
from repro.records.manifest_file import incomplete_marker, load_manifest, run_folder
from repro.running.crashpoint import CRASH_ENV_VAR
from tests.conftest import copy_run
from tests.helpers import float_bits

KILLED = -signal.SIGKILL


def _seeded_rng(request: pytest.FixtureRequest) -> random.Random:
    seed = int(os.environ.get("REPRO_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"{request.node.name}: random seed {seed} (replay with REPRO_TEST_SEED={seed})")
    return random.Random(seed)


def _repro(args: list[str], cwd: Path, crash_at: str | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a new session, so a crash point kills this run's process group only."""
    env = dict(os.environ)
    env.pop(CRASH_ENV_VAR, None)
    if crash_at:
        env[CRASH_ENV_VAR] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "repro", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=300, start_new_session=True,
    )



def assert_same_run(resumed: Path, reference: Path) -> None:
    """Per-step losses (exact bits), batch fingerprints, validation, every checkpoint's tensors."""
    a, b = load_manifest(resumed).manifest, load_manifest(reference).manifest
    assert [s.step for s in a.steps] == list(range(1, len(b.steps) + 1))
    assert [float_bits(s.loss) for s in a.steps] == [float_bits(s.loss) for s in b.steps]
    assert [s.batch for s in a.steps] == [s.batch for s in b.steps]
    assert [(float_bits(s.lr), float_bits(s.grad_norm), s.tokens) for s in a.steps] == [
        (float_bits(s.lr), float_bits(s.grad_norm), s.tokens) for s in b.steps
    ]
    assert [(v.step, float_bits(v.loss)) for v in a.validation] == [(v.step, float_bits(v.loss)) for v in b.validation]
    assert [(c.step, c.sha256, c.tensors) for c in a.checkpoints] == [
        (c.step, c.sha256, c.tensors) for c in b.checkpoints
    ]
    final_a = load_file(str(resumed.parent / a.checkpoints[-1].path))
    final_b = load_file(str(reference.parent / b.checkpoints[-1].path))
    assert final_a.keys() == final_b.keys()
    for name in final_a:  # the tensors themselves, bit for bit, not only repro's digests
        x, y = final_a[name], final_b[name]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.contiguous().view(-1).view(torch.uint8).equal(y.contiguous().view(-1).view(torch.uint8)), name
    assert len(a.timing.step_seconds) == len(a.steps)


def assert_clean(out: Path) -> None:
    """A finished run leaves its manifest and its folder, and no temporary or partial file."""
    assert sorted(p.name for p in out.parent.iterdir()) == [run_folder(out).name, out.name]
    leftovers = [p for p in out.parent.rglob("*") if p.name.endswith((".tmp", ".partial"))]
    assert leftovers == []
    assert main(["verify", str(out)]) == 0


def assert_refused_as_incomplete(out: Path, capsys: pytest.CaptureFixture, why: str) -> None:
    capsys.readouterr()
    assert main(["verify", str(out)]) == 4
    err = " ".join(capsys.readouterr().err.split())
    assert why in err and "--resume" in err and "Traceback" not in err


@pytest.mark.slow  # 27 s: four kills in one run; one kill and --resume are in the default set
def test_killed_repeatedly_then_resumed_is_bit_identical(
    smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, request: pytest.FixtureRequest
) -> None:
    """Killed mid-step, then (resumed) mid-checkpoint, then (resumed) mid-manifest, then (resumed)
    with its folder renamed into place but not its manifest: the run that finally finishes equals
    the uninterrupted one, and each crash left a marked state that verify refuses."""
    rng = _seeded_rng(request)
    out = tmp_path / "m" / "run.json"
    args = ["run", "smoke", "--out", str(out)]

    kill_step = rng.randint(1, 19)
    # The next checkpoint written after resuming from the last complete one (10 or none).
    kill_checkpoint = rng.choice([10, 20]) if kill_step < 10 else 20
    crashes = [f"step:{kill_step}", f"checkpoint:{kill_checkpoint}", "manifest", "swap"]
    for n, crash_at in enumerate(crashes):
        proc = _repro(args + (["--resume"] if n else []), tmp_path, crash_at)
        assert proc.returncode == KILLED, f"{crash_at}: {proc.stderr[-2000:]}"
        assert not out.exists(), f"{crash_at}: a manifest exists after a crash"
        assert incomplete_marker(out).exists()
        assert_refused_as_incomplete(out, capsys, "did not finish")

    proc = _repro([*args, "--resume"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_manifest(out).manifest.timing.resumed_from_step == 20
    assert_same_run(out, smoke_run)
    assert_clean(out)


def test_a_crash_never_costs_the_finished_run_it_replaces(
    smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, request: pytest.FixtureRequest
) -> None:
    """A new run with the same --out: killed before it finished, the old manifest still verifies,
    byte for byte unchanged; killed while it replaced the old one, the state is refused until
    `--resume` settles it; resumed, it finishes bit-identical to the uninterrupted run."""
    rng = _seeded_rng(request)
    out = copy_run(smoke_run, tmp_path / "m")
    before = {p: sha256_file(p) for p in out.parent.rglob("*") if p.is_file()}

    crash_at = rng.choice(["manifest", f"checkpoint:{rng.choice([10, 20])}", f"step:{rng.randint(1, 20)}"])
    proc = _repro(["run", "smoke", "--out", str(out)], tmp_path, crash_at)
    assert proc.returncode == KILLED, proc.stderr[-2000:]
    assert {p: sha256_file(p) for p in before} == before
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    captured = capsys.readouterr()
    assert "verified" in captured.out and "did not finish" in captured.err

    proc = _repro(["run", "smoke", "--out", str(out), "--resume"], tmp_path, "swap")
    assert proc.returncode == KILLED, proc.stderr[-2000:]
    assert_refused_as_incomplete(out, capsys, "was being replaced by a newer run that was killed halfway")

    proc = _repro(["run", "smoke", "--out", str(out), "--resume"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_same_run(out, smoke_run)
    assert_clean(out)
    assert sha256_file(out) != before[out]  # a new manifest (bytes vs digest compared nothing before)


@pytest.mark.slow
def test_killed_at_a_random_moment_then_resumed_is_bit_identical(
    smoke_run: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """No hook: SIGKILL from outside at a random moment after training started (marked slow:
    the hook-driven tests above cover each kind of moment; this one samples real timing)."""
    rng = _seeded_rng(request)
    out = tmp_path / "m" / "run.json"
    args = [sys.executable, "-m", "repro", "run", "smoke", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV_VAR}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out.parent / "run.incomplete" / "train.log").exists() and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 4.0))
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    if incomplete_marker(out).exists():
        resumed = _repro(["run", "smoke", "--out", str(out), "--resume"], tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(out, smoke_run)
    assert_clean(out)


def test_resume_refuses_what_it_cannot_continue(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run.json"
    assert main(["run", "smoke", "--out", str(out), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    incomplete_marker(out).write_text('{"started_at": "x", "config_sha256": "another config"}')
    assert main(["run", "smoke", "--out", str(out), "--resume"]) == 2
    assert "different config" in capsys.readouterr().err
    incomplete_marker(out).write_text("{truncated")
    assert main(["run", "smoke", "--out", str(out), "--resume"]) == 2
    assert "start afresh" in capsys.readouterr().err
