"""repro: make a training run checkable.

The core package: manifest models and canonical JSON, signing and keys, capture of the
environment, code and data, the trainer plugin interface and registry, the launcher, and the CLI.
"""

__version__ = "0.2.0"
"""The version of repro; pyproject.toml reads it from here (the one version source)."""
