"""Issue 9.3: a path a manifest records stays inside its folder and is a regular file, or is refused.

Unit checks of :mod:`repro.files.confine` on real files, symlinks, a FIFO, a socket and a device, then
the same paths recorded in really signed manifests through ``repro verify`` (exit 3), in a child
process with a timeout so a read that blocks fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from repro.errors import InputError, UnsafePathError
from repro.files.confine import open_recorded, open_regular
from repro.trust.keys import default_key_path, load_key
from tests.audits.forgery import resign_with


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``root/`` with a file, a folder, inside and outside symlinks, a FIFO and a socket; a secret beside it."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.bin").write_bytes(b"fine")
    (tmp_path / "secret").write_bytes(b"do not read")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "ok.bin").write_bytes(b"elsewhere")
    (root / "inside-link").symlink_to("sub/ok.bin")
    (root / "out-link").symlink_to(tmp_path / "secret")
    (root / "out-dir").symlink_to(tmp_path / "outside")
    (root / "up-link").symlink_to("../secret")
    os.mkfifo(root / "fifo")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock"))
    server.close()
    return root


def _read(root: Path, relative: str) -> bytes | None:
    with open_recorded(root, relative, "file") as handle:
        return None if handle is None else handle.read()


def test_inside_paths_are_read(tree: Path) -> None:
    assert _read(tree, "sub/ok.bin") == b"fine"
    assert _read(tree, "inside-link") == b"fine"  # a symlink that stays inside is followed
    assert _read(tree, "sub/absent.bin") is None
    assert _read(tree, "absent/x.bin") is None


@pytest.mark.parametrize(("relative", "reason"), [
    ("../secret", "'..'"), ("sub/../../secret", "'..'"), ("/etc/passwd", "not a relative path"),
    ("", "not a relative path"), ("sub//ok.bin", "empty"), ("./sub/ok.bin", "'.'"), ("sub/ok.bin/", "empty"),
    ("out-link", "leads outside"), ("up-link", "leads outside"), ("out-dir/ok.bin", "leads outside"),
    ("fifo", "a FIFO"), ("sock", "a socket"), ("sub", "a folder"), ("nul\x00byte", "not a relative path"),
])
def test_escaping_or_irregular_paths_are_refused(tree: Path, relative: str, reason: str) -> None:
    with pytest.raises(UnsafePathError, match=reason):
        _read(tree, relative)


def test_a_device_is_refused_without_being_opened(tree: Path) -> None:
    try:
        os.mknod(tree / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero: endless if read
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    with pytest.raises(UnsafePathError, match="a character device"):
        _read(tree, "zero")


def test_a_user_named_fifo_or_folder_is_an_input_error_not_a_hang(tree: Path) -> None:
    for path in (tree / "fifo", tree / "sub"):
        with pytest.raises(InputError, match="not a regular file"), open_regular(path, "manifest"):
            pass


VERIFY_IN_CHILD = "import sys; from repro.cli import main; sys.exit(main(['verify', sys.argv[1]]))"


def _verify_child(manifest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", VERIFY_IN_CHILD, str(manifest)], capture_output=True,
                          text=True, timeout=60, env={**os.environ}, check=False)


def test_recorded_paths_that_escape_fail_verify_without_reading(smoke_copy: Path, tmp_path: Path) -> None:
    """Each path is put into a checkpoint, the tokenizer, the SBOM or a data file of a manifest re-signed
    with the real key; verify must refuse (exit 3) quickly, never block on the FIFO or read the secret."""
    key = load_key(default_key_path())
    folder = smoke_copy.parent
    (tmp_path / "secret").write_bytes(b"do not read")
    os.mkfifo(folder / "run" / "fifo")
    (folder / "run" / "escape").symlink_to(tmp_path / "secret")
    (folder / "run" / "dir-escape").symlink_to(tmp_path)
    original = json.loads(smoke_copy.read_text())
    cases = {
        "checkpoint ../": ("checkpoints", "../secret"),
        "checkpoint absolute": ("checkpoints", str(tmp_path / "secret")),
        "checkpoint FIFO": ("checkpoints", "run/fifo"), "tokenizer symlink out": ("tokenizer", "run/escape"),
        "SBOM FIFO": ("artifacts", "run/fifo"), "SBOM folder": ("artifacts", "run/checkpoints"),
        "tokenizer via a symlinked folder": ("tokenizer", "run/dir-escape/secret"),
        "data file ../": ("data", "../../../../../../etc/passwd"), "data file absolute": ("data", "/etc/passwd"),
    }
    for label, (where, path) in cases.items():
        def edit(raw: dict, where: str = where, path: str = path) -> None:
            raw.clear()
            raw.update(json.loads(json.dumps(original)))
            record = {"checkpoints": lambda: raw["checkpoints"][0], "tokenizer": lambda: raw["data"]["tokenizer"],
                      "artifacts": lambda: raw["artifacts"][0], "data": lambda: raw["data"]["files"][0]}[where]()
            record["path"] = path
        resign_with(smoke_copy, edit, key)
        done = _verify_child(smoke_copy)
        assert done.returncode == 3, (label, done.stderr)
        assert "refusing" in done.stderr or "inside its folder" in done.stderr, (label, done.stderr)
