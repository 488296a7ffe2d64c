"""Out-of-tree trainer plugins for tests: on PYTHONPATH, or installed like a real distribution.

The training child inherits the test process's environment, so a folder is made importable for
both by prepending it to ``sys.path`` (this process) and to ``PYTHONPATH`` (the child).
:class:`PluginSite` lays out a folder as pip would in site-packages: the plugin module beside a
``tinymlp_plugin-VERSION.dist-info/`` with ``METADATA``, ``entry_points.txt`` and
``top_level.txt``, which ``importlib.metadata`` finds on ``sys.path`` like any installed
distribution. ``importlib.metadata`` caches directory listings per path entry (keyed by mtime);
every change here calls ``importlib.invalidate_caches()`` so the next lookup sees it.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

ASSETS = Path(__file__).parent / "assets"
PLUGINS = ASSETS / "plugins"
REGRESSION_CSV = ASSETS / "regression.csv"
PLUGIN_MODULES = ("tinymlp", "tinylit")
DISTRIBUTION = "tinymlp-plugin"


def make_importable(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Put ``folder`` first on sys.path and PYTHONPATH; forget plugin modules imported before."""
    monkeypatch.syspath_prepend(str(folder))
    current = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), *([current] if current else [])]))
    for name in PLUGIN_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    importlib.invalidate_caches()


class PluginSite:
    """A site-packages-like folder holding ``tinymlp`` as the distribution ``tinymlp-plugin``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def install(self, version: str) -> None:
        """Install (or replace with) ``version``: the module and its dist-info."""
        self.uninstall()
        shutil.copy2(PLUGINS / "tinymlp.py", self.root / "tinymlp.py")
        info = self.root / f"tinymlp_plugin-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {version}\n"
            "Summary: an out-of-tree repro trainer for tests\n", encoding="utf-8",
        )
        (info / "entry_points.txt").write_text("[repro.trainers]\ntinymlp = tinymlp:TinyMLPTrainer\n", encoding="utf-8")
        (info / "top_level.txt").write_text("tinymlp\n", encoding="utf-8")
        importlib.invalidate_caches()

    def uninstall(self) -> None:
        """Remove the module and every dist-info, as ``pip uninstall`` would."""
        for info in self.root.glob("tinymlp_plugin-*.dist-info"):
            shutil.rmtree(info)
        (self.root / "tinymlp.py").unlink(missing_ok=True)
        sys.modules.pop("tinymlp", None)
        importlib.invalidate_caches()


def interrupt_after(manifest: Path, step: int) -> None:
    """Make a finished run look as if it had been killed after its checkpoint at ``step``: the
    manifest gone, its files back in the in-flight folder without the later checkpoints, and the
    in-flight marker present (see :mod:`repro.running.layout`), so ``repro run ... --resume`` continues
    from that checkpoint."""
    from repro.records.manifest_file import load_manifest
    from repro.running.layout import InFlightRun, RunLayout

    recorded = load_manifest(manifest).manifest
    layout = RunLayout(manifest)
    layout.root.rename(layout.staging)
    for ckpt in (layout.staging / "checkpoints").glob("step-*"):
        if int(ckpt.name.split("-")[1]) > step:
            shutil.rmtree(ckpt)
    manifest.unlink()
    layout.write_marker(InFlightRun(started_at=recorded.timing.started_at, config_sha256=recorded.run.config_sha256))
