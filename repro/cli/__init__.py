"""The ``repro`` command line: one module per command; the only place that prints errors and chooses exit codes."""

from repro.cli.app import main

__all__ = ["main"]
