"""Built-in trainer plugins for repro. Each is registered under the ``repro.trainers`` entry point."""
