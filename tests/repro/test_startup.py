"""Start-up of the console script: what is loaded while a Ctrl-C still exits at once.

A Ctrl-C that lands while a Rust (pyo3) extension imports a Python module from native code makes
the extension panic and print a Rust backtrace note above "interrupted" (seen in CI: pydantic_core
importing ``datetime``'s C API). ``repro.__main__`` loads those extensions first, under its
start-up handler; these tests check that it does, and that no command loads a pyo3 module it
does not know.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import repro.__main__ as entry

# Runs a command through the console script's own entry point, then prints every loaded extension
# module built with pyo3 (its file names the crate), and whether it was loaded before main() ran.
_REPORT = r"""
import json, sys
import repro.cli.app as cli
real_main = cli.main
loaded_before_main = []
def main():
    loaded_before_main.extend(sys.modules)
    return real_main()
cli.main = main
from repro.__main__ import run
sys.argv = ["repro", *sys.argv[1:]]
code = run()
pyo3 = []
for name, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None) or ""
    if path.endswith(".so"):
        with open(path, "rb") as f:
            if b"pyo3" in f.read():
                pyo3.append(name)
print(json.dumps({"code": code, "pyo3": sorted(pyo3), "before_main": sorted(loaded_before_main)}))
"""


def _report(*argv: str, cwd: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _REPORT, *argv], capture_output=True, text=True,
                          cwd=cwd, timeout=300, check=True)
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_every_pyo3_module_a_command_loads_is_loaded_before_main(smoke_run: Path, tmp_path: Path) -> None:
    # `run` writes checkpoints (safetensors); `verify` reads signatures and manifests.
    for argv in (["run", "smoke", "--set", "steps=2", "--out", str(tmp_path / "run.json")], ["verify", str(smoke_run)]):
        report = _report(*argv, cwd=tmp_path)
        assert report["code"] == 0, (argv, report["code"])
        pyo3 = report["pyo3"]
        assert isinstance(pyo3, list) and pyo3, "no pyo3 module seen: the scan itself is broken"
        before_main = report["before_main"]
        assert isinstance(before_main, list)
        assert set(pyo3) <= set(before_main), (argv, sorted(set(pyo3) - set(before_main)))
        assert {"datetime", "_datetime"} <= set(before_main)


def test_the_start_up_list_names_importable_modules() -> None:
    for name in entry.NATIVE_FIRST:
        __import__(name)
