"""The records repro writes and reads: the manifest, its step table, checkpoints, the SBOM, and
their canonical bytes."""
