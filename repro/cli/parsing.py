"""The argument parser every command is added to: it raises instead of exiting."""

from __future__ import annotations

import argparse
from typing import TypeAlias

from repro import errors

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so ``main()`` decides the exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise errors.UsageError(f"{self.prog}: {message}")
