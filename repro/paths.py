"""Default locations: the cache shared between runs."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV_VAR = "REPRO_CACHE_DIR"


def cache_dir() -> Path:
    """Cross-run cache (tokenizers, token streams): ``$REPRO_CACHE_DIR`` or ``~/.cache/repro``."""
    if env := os.environ.get(CACHE_ENV_VAR):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "repro"
