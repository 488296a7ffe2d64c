"""Recording overhead of repro.record on examples/plain/train.py, in one process, interleaved.

Each repeat runs the example's training twice in this process: once with ``repro.record``
inactive (every call a no-op, as outside ``repro run``) and once with a recording session as
``repro run`` installs it (steps recorded, batches fingerprinted, validation, checkpoints written
as safetensors with per-tensor digests). The order alternates between repeats; the ratio of the
median walls is the in-loop overhead. On a loaded machine the walls vary far more than that
overhead, so each recorded run also measures the seconds spent inside the ``repro.record`` calls
themselves (step, validation, checkpoint, data, seed, resume) as a fraction of that run's wall:
the same run's numerator and denominator, which contention scales together. CPU seconds
(``time.process_time``) are reported beside the walls. The fixed cost of ``repro run`` around the script (process
start, environment capture, code fingerprint, signing) is reported by every manifest
(``timing.overhead_seconds``) and not measured here.

    .venv/bin/python benchmarks/record_overhead.py --steps 200 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import platform
import runpy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from repro import record
from repro.record.session import Session
from repro.records.manifest import RunSettings
from repro.running.job import COMMAND_ENTRY, Job
from repro.running.recording import Events, RunRecorder, Start

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "plain" / "train.py"


INSIDE = [0.0]
_CALLS = ("seed", "data", "step", "validation", "checkpoint", "resume")


def _timed(func: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            INSIDE[0] += time.perf_counter() - began
    return wrapper


for _name in _CALLS:
    setattr(record, _name, _timed(getattr(record, _name)))


def once(argv: list[str], recording: bool, folder: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and seconds inside repro.record calls of one training run."""
    if recording:
        job = Job(trainer_name="command", trainer_entry=COMMAND_ENTRY, settings=RunSettings(),
                  config={"command": ["python", str(SCRIPT), *argv]}, config_sha256="0" * 64,
                  artifact_dir=str(folder), cache_dir=str(folder), checkpoint_root=str(folder / "checkpoints"),
                  result_path=str(folder / "result.json"))
        record._activate(Session(job, RunRecorder(job, Events(None), None, Start()), None))
    sys.argv = [str(SCRIPT), *argv]
    INSIDE[0] = 0.0
    began, cpu = time.perf_counter(), time.process_time()
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        record._activate(None)
    return time.perf_counter() - began, time.process_time() - cpu, INSIDE[0]


def per_call(folder: Path) -> tuple[float, list[float]]:
    """Seconds per ``step()`` call (2000 calls, a 32 x 16 batch) and per ``checkpoint()`` of the
    example's model and AdamW state (5 calls), in a recording session."""
    from repro.record.session import state_tensors

    job = Job(trainer_name="command", trainer_entry=COMMAND_ENTRY, settings=RunSettings(), config={"command": ["x"]},
              config_sha256="0" * 64, artifact_dir=str(folder), cache_dir=str(folder),
              checkpoint_root=str(folder / "checkpoints"), result_path=str(folder / "result.json"))
    session = Session(job, RunRecorder(job, Events(None), None, Start()), None)
    x = torch.randint(256, (32, 16))
    loss, norm = torch.tensor(2.5), torch.tensor(1.0)
    began = time.perf_counter()
    for _ in range(2000):
        session.step(loss, 0.003, norm, x.numel(), x)
    step = (time.perf_counter() - began) / 2000
    namespace = runpy.run_path(str(SCRIPT), run_name="not_main")
    model = namespace["ByteMLP"](16)
    optimizer = torch.optim.AdamW(model.parameters())
    model(x).sum().backward()
    optimizer.step()
    state = {"model": model, "optimizer": optimizer}
    checkpoints = []
    for _ in range(5):
        session.step(loss, 0.003, norm, x.numel(), x)
        began = time.perf_counter()
        session.checkpoint(state)
        checkpoints.append(time.perf_counter() - began)
    assert len(state_tensors(state)) > 0
    return step, checkpoints


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(2)
    argv = ["--steps", str(args.steps), "--checkpoint-every", str(args.checkpoint_every)]
    walls: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        step_call, checkpoint_calls = per_call(Path(tmp) / "calls")
        once(argv, False, Path(tmp) / "warmup")
        for repeat in range(args.repeats):
            for recording in ((False, True) if repeat % 2 == 0 else (True, False)):
                folder = Path(tmp) / f"r{repeat}-{int(recording)}"
                walls[recording].append(once(argv, recording, folder))
    plain, recorded = (statistics.median(w for w, _, _ in walls[k]) for k in (False, True))
    cpu_plain, cpu_recorded = (statistics.median(c for _, c, _ in walls[k]) for k in (False, True))
    inside = [i / w for w, _, i in walls[True]]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    print(f"{args.steps} steps, checkpoint every {args.checkpoint_every}, {args.repeats} interleaved repeats")
    for label, key in (("not recording", False), ("recording    ", True)):
        print(f"{label}: wall {', '.join(f'{w:.2f}' for w, _, _ in walls[key])} s; "
              f"CPU {', '.join(f'{c:.2f}' for _, c, _ in walls[key])} s")
    print(f"median wall ratio recorded / not: {recorded / plain:.4f}; median CPU ratio: {cpu_recorded / cpu_plain:.4f}")
    print(f"per call: step() {step_call * 1e6:.0f} us; checkpoint() "
          f"{', '.join(f'{c * 1e3:.1f}' for c in checkpoint_calls)} ms")
    print(f"inside repro.record calls, share of each recorded run's wall: "
          f"{', '.join(f'{x * 100:.2f}%' for x in inside)} (median {statistics.median(inside) * 100:.2f}%)")


if __name__ == "__main__":
    main()
