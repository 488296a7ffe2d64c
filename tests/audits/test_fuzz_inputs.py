"""No traceback, ever, property-based: gate policies and checkpoint files.

A ``[tool.repro.gate]`` policy of any shape is loaded or refused with a :class:`PolicyError` (and
``repro gate`` answers with a documented code, never 1 or 70); a checkpoint of any bytes is read or
refused with a :class:`ReproError`, never another exception.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from repro.audits.options import Tolerance
from repro.audits.policy import PolicyError, load_policy
from repro.audits.tensors import compare_checkpoint
from repro.cli import main
from repro.errors import ExitCode, ReproError
from repro.records.checkpoint import load_state
from repro.records.hashing import sha256_tensor
from repro.trust.keys import generate_key

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

KEYS = ["manifests", "trusted_keys", "mode", "steps", "segments", "seed", "device", "threads", "tolerance",
        "vulnerabilities", "atol", "rtol", "enabled", "on_unchecked", "osv_url", "ignore", "timeout", "x"]
leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["full", "steps", "segments", "cpu", "cuda", "fail", "warn", ".", "/",
                                          "keys.txt", "empty.txt", "m.json", "http://127.0.0.1:9/v1/query"]),
)
value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4), max_leaves=10)


def _toml_value(v: Any) -> str:
    if v is None:
        return '"null"'  # TOML has no null
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v != v:
        return "nan"
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def toml(table: dict[str, Any]) -> str:
    """``[tool.repro.gate]`` with ``table``'s entries (inline tables for nested ones)."""
    return "[tool.repro.gate]\n" + "".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in table.items())


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("policies")
    (base / "keys.txt").write_text(generate_key(base / "k.pem").public_line())
    (base / "empty.txt").write_text("")
    (base / "m.json").write_text("{}")
    return base


def _gate(config: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["gate", "--config", str(config), "--json", str(config.parent / "gate.json")])
    return code, out.getvalue() + err.getvalue()


def _refused_or_loaded(config: Path) -> None:
    with contextlib.suppress(PolicyError):
        load_policy(config)
    code, text = _gate(config)
    assert code in (ExitCode.OK, ExitCode.USAGE, ExitCode.INTEGRITY, ExitCode.COULD_NOT_CHECK), (code, text[-400:])
    assert "Traceback" not in text


@FUZZ
@given(table=st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), value, max_size=6),
       valid_core=st.booleans())
def test_any_policy_table_is_loaded_or_refused(policy_dir: Path, table: dict[str, Any], valid_core: bool) -> None:
    if valid_core:  # often valid enough to reach the gate's audits (of a manifest that is not one)
        table = {"manifests": ["m.json"], "trusted_keys": "keys.txt", **table}
    config = policy_dir / "pyproject.toml"
    config.write_text(toml(table), encoding="utf-8")
    _refused_or_loaded(config)


@FUZZ
@given(text=st.text(max_size=200) | st.sampled_from(["tool = 1\n", "[tool]\nrepro = []\n", "[tool.repro]\ngate = 3\n",
                                                     "[[tool.repro.gate]]\nmanifests = []\n"]))
def test_any_pyproject_text_is_loaded_or_refused(policy_dir: Path, text: str) -> None:
    config = policy_dir / "pyproject.toml"
    config.write_text(text, encoding="utf-8", errors="surrogatepass")
    _refused_or_loaded(config)


# -- checkpoint files ---------------------------------------------------------------------------
TENSORS = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1, 2, 3], dtype=torch.int64)}
GOOD = save(TENSORS)


def _mutated(data: st.DataObject) -> bytes:
    kind = data.draw(st.sampled_from(["flip", "truncate", "header_length", "header_json", "garbage", "append"]))
    body = bytearray(GOOD)
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            body[data.draw(st.integers(0, len(body) - 1))] ^= data.draw(st.integers(1, 255))
        return bytes(body)
    if kind == "truncate":
        return bytes(body[: data.draw(st.integers(0, len(body) - 1))])
    if kind == "header_length":
        return struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1))) + bytes(body[8:])
    if kind == "header_json":
        n = struct.unpack("<Q", GOOD[:8])[0]
        header = json.loads(GOOD[8:8 + n])
        name = data.draw(st.sampled_from(sorted(header)))
        header[name] = data.draw(value)
        encoded = json.dumps(header).encode()
        return struct.pack("<Q", len(encoded)) + encoded + bytes(body[8 + n:])
    if kind == "append":
        return bytes(body) + data.draw(st.binary(min_size=1, max_size=64))
    return data.draw(st.binary(max_size=200))


@FUZZ
@given(data=st.data())
def test_any_checkpoint_bytes_are_read_or_refused(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    folder = tmp_path_factory.mktemp("ckpt", numbered=True)
    bad, good = folder / "recorded.safetensors", folder / "rerun.safetensors"
    bad.write_bytes(_mutated(data))
    good.write_bytes(GOOD)
    digests = {name: sha256_tensor(t) for name, t in TENSORS.items()}
    recorded = {**digests, "a": "0" * 64, "missing": "1" * 64}  # force reading "a", name one it lacks
    try:
        load_state(bad, hashlib.sha256(bad.read_bytes()).hexdigest())
    except ReproError as exc:
        assert exc.exit_code in (ExitCode.USAGE, ExitCode.INTEGRITY)
    try:
        compare_checkpoint(10, bad, recorded, good, {**digests, "missing": "2" * 64}, Tolerance(), False)
    except ReproError as exc:
        assert exc.exit_code == ExitCode.INTEGRITY, exc
