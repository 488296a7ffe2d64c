"""Shared fixtures: an isolated repro home (key, cache) and one real smoke run to inspect.

Tests never touch the user's real key or cache: every session gets its own under a temp dir.
Tests that modify a run's files use ``smoke_copy`` (a private copy), never ``smoke_run``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from repro.cli import main

if TYPE_CHECKING:
    from tests.plugin_site import PluginSite
from repro.records.manifest_file import run_folder


@pytest.fixture(scope="session", autouse=True)
def repro_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the signing key, the cache and the config dir at a session temp dir."""
    base = tmp_path_factory.mktemp("repro-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("REPRO_CACHE_DIR", str(base / "cache"))
    patch.setenv("REPRO_SIGNING_KEY", str(base / "key.pem"))
    patch.setenv("XDG_CONFIG_HOME", str(base / "config"))
    yield base
    patch.undo()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Render rich output 200 columns wide so assertions do not depend on line wrapping."""
    from repro.rendering.console import err_console, out_console

    for console in (err_console, out_console):
        monkeypatch.setattr(console, "width", 200)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, repro_home: Path) -> Path:
    """A real `repro run smoke`, made once per session; returns its manifest path. Do not modify."""
    out = tmp_path_factory.mktemp("smoke") / "run.json"
    assert main(["run", "smoke", "--out", str(out)]) == 0
    return out


def copy_run(manifest: Path, dest: Path) -> Path:
    """Copy a manifest and its run folder into ``dest``; return the copy's manifest path."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / manifest.name
    shutil.copy2(manifest, target)
    if run_folder(manifest).exists():
        shutil.copytree(run_folder(manifest), run_folder(target))
    return target


@pytest.fixture
def smoke_copy(smoke_run: Path, tmp_path: Path) -> Path:
    """A private copy of the smoke run that a test may modify."""
    return copy_run(smoke_run, tmp_path / "copy")


@pytest.fixture
def plugin_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tests/assets/plugins`` (tinymlp, tinylit) importable here and in training children."""
    from tests.plugin_site import PLUGINS, make_importable

    make_importable(monkeypatch, PLUGINS)
    return PLUGINS


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginSite]:
    """An empty site-packages-like folder on the path; ``.install(version)`` adds tinymlp-plugin."""
    from tests.plugin_site import PluginSite, make_importable

    site = PluginSite(tmp_path / "site")
    make_importable(monkeypatch, site.root)
    yield site
    site.uninstall()
