"""What a long run's manifest costs: size on disk, `repro verify` time and peak memory, and the
time of an audit's step comparison, at 10k, 100k and 1M steps.

A real signed run (default: the committed reference ``manifests/reference/smoke.json``, 20 steps)
is stretched to N steps by repeating its step records (steps renumbered 1..N) and re-signed with a
temporary key, in both formats:

- ``v2`` (this release): the steps in ``<run>/steps.safetensors``, hashed in the manifest;
- ``v1`` (before): the steps inline in the JSON; ``repro verify`` of this release reads it through
  the v1 -> v2 migration, and ``--old-repro PATH`` also times an older ``repro`` executable on it.

Each verify runs as a fresh process (``repro verify``, as a user would) started by a small wrapper
process, which reports the child's wall time, CPU time (user + system) and peak RSS
(``getrusage(RUSAGE_CHILDREN)``); CPU time is the steadier number on a shared machine. The
formats are measured interleaved, ``--repeat`` times each, and the median is printed, because the
machine is shared and noisy: read ratios within one sitting. The comparison is timed in process:
``repro.audits.comparison.compare_steps`` on two N-step tables, one with a loss perturbed by one
float32 ulp at step N/2 (per-step details and all).

    python benchmarks/manifest_scale.py [--sizes 10000 100000 1000000] [--v1-sizes 10000 100000]
        [--old-repro /path/to/old/repro] [--repeat 3] [--json FILE]

Results are recorded in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from repro.records.manifest_file import load_manifest, manifest_bytes, run_folder
from repro.records.steptable import FILE_NAME, StepColumns, write_table
from repro.trust.keys import generate_key
from repro.trust.signing import sign_body

REFERENCE = Path(__file__).resolve().parents[1] / "manifests" / "reference" / "smoke.json"

_WRAPPER = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
dt = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = usage.ru_utime + usage.ru_stime
print(json.dumps({"rc": rc, "seconds": dt, "cpu_seconds": cpu, "peak_rss_mb": usage.ru_maxrss / 1024}))
"""


def _stretch(columns: StepColumns, n: int) -> StepColumns:
    """``columns`` repeated to ``n`` rows, steps renumbered 1..n."""
    reps = np.resize(np.arange(len(columns)), n)
    seconds = columns.seconds if columns.seconds is not None else np.zeros(len(columns))
    return StepColumns(
        step=np.arange(1, n + 1, dtype=np.int64), loss=columns.loss[reps], lr=columns.lr[reps],
        grad_norm=columns.grad_norm[reps], tokens=columns.tokens[reps], batch=columns.batch[reps],
        seconds=seconds[reps],
    )


def _copy(source: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    target = dest / source.name
    shutil.copytree(run_folder(source), run_folder(target))
    return target


def _planned(body: dict[str, Any], n: int) -> None:
    """Make the config plan ``n`` steps (verify checks that a finished run recorded what it planned)."""
    from repro.records.manifest import RunSettings
    from repro.running.config import config_digest

    body["run"]["config"]["steps"] = n
    body["run"]["config_sha256"] = config_digest(RunSettings.model_validate(body["run"]["settings"]),
                                                 body["run"]["config"])


def _sign_and_write(body: dict[str, Any], target: Path, key: Any) -> None:
    body = {k: v for k, v in body.items() if k != "signature"}
    signed = {**body, "signature": sign_body(body, key).model_dump(mode="json")}
    target.write_text(json.dumps(signed, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def make_v2(source: Path, n: int, dest: Path, key: Any) -> Path:
    """A version-2 copy of ``source`` stretched to ``n`` steps, signed with ``key``."""
    loaded = load_manifest(source)
    target = _copy(source, dest)
    columns = _stretch(loaded.manifest.step_columns(), n)
    sha256, size = write_table(run_folder(target) / FILE_NAME, columns)
    body = json.loads(manifest_bytes(loaded.manifest))
    body["step_table"] = {"path": f"{run_folder(target).name}/{FILE_NAME}", "sha256": sha256, "size": size,
                          "rows": n, "format": "repro.step-table/1"}
    _planned(body, n)
    _sign_and_write(body, target, key)
    return target


def make_v1(source: Path, n: int, dest: Path, key: Any) -> Path:
    """A version-1 copy (steps inline) of ``source`` stretched to ``n`` steps, signed with ``key``."""
    loaded = load_manifest(source)
    target = _copy(source, dest)
    columns = _stretch(loaded.manifest.step_columns(), n)
    body = json.loads(manifest_bytes(loaded.manifest))
    del body["step_table"]
    body["schema_version"] = 1
    body["steps"] = [
        {"step": s, "loss": x, "lr": lr, "grad_norm": g, "tokens": t, "batch": b}
        for s, x, lr, g, t, b in zip(columns.step.tolist(), columns.loss.tolist(), columns.lr.tolist(),
                                     columns.grad_norm.tolist(), columns.tokens.tolist(),
                                     [b.decode() for b in columns.batch.tolist()], strict=True)
    ]
    assert columns.seconds is not None
    body["timing"]["step_seconds"] = columns.seconds.tolist()
    _planned(body, n)
    _sign_and_write(body, target, key)
    return target


def disk_mb(manifest: Path) -> float:
    """Manifest plus step table, in MB (10^6 bytes)."""
    table = run_folder(manifest) / FILE_NAME
    return (manifest.stat().st_size + (table.stat().st_size if table.exists() else 0)) / 1e6


def verify_once(repro: str, manifest: Path) -> dict[str, Any]:
    """Time one ``repro verify`` in a fresh process; its peak RSS."""
    out = subprocess.run([sys.executable, "-c", _WRAPPER, repro, "verify", str(manifest)],
                         capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"{repro} verify {manifest} exited {result['rc']}")
    return result


def time_comparison(n: int, source: Path) -> dict[str, Any]:
    """compare_steps on two n-step tables that differ by one float32 ulp of loss at step n/2."""
    from repro.audits.comparison import compare_steps
    from repro.audits.options import Tolerance

    recorded = _stretch(load_manifest(source).manifest.step_columns(), n)
    loss = recorded.loss.copy()
    loss[n // 2] = float(np.nextafter(np.float32(loss[n // 2]), np.float32(np.inf)))
    rerun = StepColumns(step=recorded.step.copy(), loss=loss, lr=recorded.lr.copy(),
                        grad_norm=recorded.grad_norm.copy(), tokens=recorded.tokens.copy(),
                        batch=recorded.batch.copy())
    t, c = time.perf_counter(), time.process_time()
    losses, _others, batches, details = compare_steps(recorded, rerun, Tolerance())
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    assert losses.verdict == "within_tolerance" and losses.first_difference_step == n // 2 + 1
    assert losses.first_difference_ulps == 1 and batches.identical and len(details) == n
    return {"steps": n, "seconds": dt, "cpu_seconds": cpu, "verdict": losses.verdict,
            "first_difference_step": losses.first_difference_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REFERENCE, help="a real signed manifest to stretch")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--v1-sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--old-repro", help="an older repro executable to time on the v1 manifests too")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    repro = str(Path(sys.executable).with_name("repro"))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="manifest-scale-") as tmp:
        key = generate_key(Path(tmp) / "key.pem")
        for n in sorted(set(args.sizes) | set(args.v1_sizes)):
            cases: list[tuple[str, str, Path]] = []
            if n in args.sizes:
                cases.append(("v2", repro, make_v2(args.source, n, Path(tmp) / f"v2-{n}", key)))
            if n in args.v1_sizes:
                v1 = make_v1(args.source, n, Path(tmp) / f"v1-{n}", key)
                cases.append(("v1 (migrated)", repro, v1))
                if args.old_repro:
                    cases.append(("v1 (old repro)", args.old_repro, v1))
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in cases}
            for _ in range(args.repeat):  # interleaved
                for label, exe, path in cases:
                    runs[label].append(verify_once(exe, path))
            for label, _, path in cases:
                row = {
                    "format": label, "steps": n, "disk_mb": round(disk_mb(path), 2),
                    "verify_seconds": round(statistics.median(r["seconds"] for r in runs[label]), 3),
                    "verify_cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in runs[label]), 3),
                    "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in runs[label]), 1),
                }
                rows.append(row)
                print(f"{row['format']:15} {n:>9} steps  {row['disk_mb']:8.2f} MB  verify "
                      f"{row['verify_seconds']:6.2f} s wall {row['verify_cpu_seconds']:6.2f} s CPU  "
                      f"peak RSS {row['peak_rss_mb']:7.1f} MB", flush=True)
            shutil.rmtree(Path(tmp) / f"v2-{n}", ignore_errors=True)
            shutil.rmtree(Path(tmp) / f"v1-{n}", ignore_errors=True)
    comparison = time_comparison(max(args.sizes), args.source)
    print(f"audit comparison of {comparison['steps']} steps: {comparison['seconds']:.2f} s wall, "
          f"{comparison['cpu_seconds']:.2f} s CPU "
          f"({comparison['verdict']}, first difference at step {comparison['first_difference_step']})")
    results = {
        "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "verify": rows, "comparison": comparison,
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
