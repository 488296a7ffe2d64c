"""Default locations: the cache shared between runs, kept private to the user.

A tokenizer and a token stream are the corpus in another form (the text can be recovered from
them), so every cache folder repro makes is 0700 and every cache file 0600, whatever the umask.
"""

from __future__ import annotations

import os
from pathlib import Path

from repro.errors import OutputError

CACHE_ENV_VAR = "REPRO_CACHE_DIR"


def cache_dir() -> Path:
    """Cross-run cache (tokenizers, token streams): ``$REPRO_CACHE_DIR`` or ``~/.cache/repro``."""
    if env := os.environ.get(CACHE_ENV_VAR):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "repro"


def private_folder(root: Path, *parts: str) -> Path:
    """``root/parts...``, created if needed; ``root`` and every folder under it mode 0700.

    A folder that already exists is tightened to 0700 too (caches of older versions were 0755),
    so files written there before are no longer readable by others.
    """
    folder = Path(root)
    try:
        for part in ("", *parts):
            folder = folder / part if part else folder
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if folder.stat().st_mode & 0o077:
                os.chmod(folder, 0o700)
    except OSError as exc:
        raise OutputError(f"cannot use cache folder {folder}: {exc.strerror}; make it yours, or set "
                          f"{CACHE_ENV_VAR} to a folder you own") from exc
    return folder
