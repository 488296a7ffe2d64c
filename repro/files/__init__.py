"""Files on disk: atomic writes, confined reads of recorded paths, where repro keeps its own files."""
