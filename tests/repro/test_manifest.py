"""The manifest model: round trip, strictness, published schema, signature basics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro.errors import ManifestFormatError, SignatureError
from repro.records.manifest import RunManifest
from repro.records.manifest_file import load_manifest, manifest_bytes
from repro.records.schema import schema_text
from repro.trust.verify import verify_manifest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_round_trip_is_lossless(smoke_run: Path) -> None:
    loaded = load_manifest(smoke_run)
    again = RunManifest.model_validate_json(manifest_bytes(loaded.manifest))
    assert again == loaded.manifest
    assert manifest_bytes(again) == smoke_run.read_bytes()


def test_losses_round_trip_exactly(smoke_run: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file

    raw = json.loads(smoke_run.read_text())
    losses = load_file(smoke_run.parent / raw["step_table"]["path"])["loss"]
    # The float32 losses are stored exactly in the float64 column, and read back the same.
    assert losses.dtype == np.float64 and len(losses) == 20
    assert np.array_equal(losses.astype(np.float32).astype(np.float64), losses)
    assert [s.loss for s in load_manifest(smoke_run).manifest.steps] == losses.tolist()


def test_published_schema_is_current() -> None:
    assert (DOCS / "manifest.schema.json").read_text() == schema_text(RunManifest), (
        "regenerate with: python -m repro.records.schema docs"
    )


def test_unknown_field_is_rejected(smoke_copy: Path) -> None:
    raw = json.loads(smoke_copy.read_text())
    raw["run"]["surprise"] = 1
    smoke_copy.write_text(json.dumps(raw))
    with pytest.raises(ManifestFormatError, match="surprise"):
        load_manifest(smoke_copy)


def test_signature_covers_values(smoke_copy: Path) -> None:
    raw = json.loads(smoke_copy.read_text())
    raw["validation"][0]["loss"] = raw["validation"][0]["loss"] + 1e-7
    smoke_copy.write_text(json.dumps(raw))
    with pytest.raises(SignatureError, match="changed after it was signed"):
        verify_manifest(smoke_copy)


def test_layout_is_not_signed_content(smoke_copy: Path) -> None:
    """Re-indenting the file keeps the signature valid: the signature covers canonical JSON."""
    raw = json.loads(smoke_copy.read_text())
    smoke_copy.write_text(json.dumps(raw, indent=4))
    assert verify_manifest(smoke_copy).key_id


def test_manifest_records_what_issue_2_requires(smoke_run: Path) -> None:
    m = load_manifest(smoke_run).manifest
    assert m.run.trainer.name == "gpt" and m.run.trainer.distribution == "repro-audit"
    assert m.run.config["n_layer"] == 2 and m.run.settings.seed == 1337
    assert m.environment.torch_version and "torch" in m.environment.distributions
    assert m.environment.cpu_count and m.environment.torch_build
    assert len(m.data.files) == 2 and m.data.tokenizer is not None and m.data.token_stream_sha256
    assert all(len(s.batch) == 16 for s in m.steps)
    assert all(c.tensors for c in m.checkpoints)
    # The full resumable state is in each checkpoint: model, optimizer moments, RNG states.
    names = m.checkpoints[-1].tensors
    assert any(n.startswith("model.") for n in names)
    assert any(n.endswith(".exp_avg_sq") for n in names)
    assert {"gen.batches", "repro.rng.torch_cpu", "repro.rng.python", "repro.rng.numpy"} <= set(names)
    assert m.timing.wall_seconds > 0 and len(m.timing.step_seconds) == 20
