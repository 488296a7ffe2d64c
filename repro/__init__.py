"""repro: make a training run checkable.

The core package: manifest models and canonical JSON, signing and keys, capture of the
environment, code and data, the trainer plugin interface and registry, the launcher, and the CLI.
"""

__version__ = "0.1.0"
