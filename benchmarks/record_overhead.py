"""Recording overhead of repro.record on examples/plain/train.py, in one process, interleaved.

Each repeat runs the example's training twice in this process: once with ``repro.record``
inactive (every call a no-op, as outside ``repro run``) and once with a recording session as
``repro run`` installs it (steps recorded, batches fingerprinted, validation, checkpoints written
as safetensors with per-tensor digests). The order alternates between repeats; the ratio of the
median walls is the in-loop overhead. The fixed cost of ``repro run`` around the script (process
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

import torch

from repro import record
from repro.record.session import Session
from repro.records.manifest import RunSettings
from repro.running.job import COMMAND_ENTRY, Job
from repro.running.recording import Events, RunRecorder, Start

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "plain" / "train.py"


def once(argv: list[str], recording: bool, folder: Path) -> float:
    """Wall seconds of one training run of the example (recorded or not)."""
    if recording:
        job = Job(trainer_name="command", trainer_entry=COMMAND_ENTRY, settings=RunSettings(),
                  config={"command": ["python", str(SCRIPT), *argv]}, config_sha256="0" * 64,
                  artifact_dir=str(folder), cache_dir=str(folder), checkpoint_root=str(folder / "checkpoints"),
                  result_path=str(folder / "result.json"))
        record._activate(Session(job, RunRecorder(job, Events(None), None, Start()), None))
    sys.argv = [str(SCRIPT), *argv]
    began = time.perf_counter()
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        record._activate(None)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(2)
    argv = ["--steps", str(args.steps), "--checkpoint-every", str(args.checkpoint_every)]
    walls: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        once(argv, False, Path(tmp) / "warmup")
        for repeat in range(args.repeats):
            for recording in ((False, True) if repeat % 2 == 0 else (True, False)):
                folder = Path(tmp) / f"r{repeat}-{int(recording)}"
                walls[recording].append(once(argv, recording, folder))
    plain, recorded = statistics.median(walls[False]), statistics.median(walls[True])
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    print(f"{args.steps} steps, checkpoint every {args.checkpoint_every}, {args.repeats} interleaved repeats")
    print(f"not recording: median {plain:.3f} s  ({', '.join(f'{w:.3f}' for w in walls[False])})")
    print(f"recording:     median {recorded:.3f} s  ({', '.join(f'{w:.3f}' for w in walls[True])})")
    print(f"ratio recorded / not: {recorded / plain:.4f} ({(recorded / plain - 1) * 100:+.2f}%)")


if __name__ == "__main__":
    main()
