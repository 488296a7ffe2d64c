"""Malformed input, property-based: whatever bytes `repro verify` is given, it answers
with exit 2 (unreadable, not a manifest, wrong schema version) or 3 (a manifest that was altered)
and one line naming the file and what is wrong; never a traceback, never exit 0.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from repro.cli import main
from repro.errors import ReproError
from repro.records.canonical import canonical_bytes
from repro.records.manifest import SCHEMA_VERSION

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["kind", "schema_version", "signature", "steps", "run", "value"]) | st.text(max_size=8),
        inner, max_size=4,
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one file every example overwrites (hypothesis forbids function-scoped tmp_path)."""
    return tmp_path_factory.mktemp("malformed") / "run.json"


@pytest.fixture(scope="module")
def genuine(smoke_run: Path) -> dict[str, Any]:
    return json.loads(smoke_run.read_text())


def verify_refuses(path: Path, data: bytes) -> tuple[int, str]:
    """Write ``data`` to ``path``, run `repro verify` on it; check the answer's form."""
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["verify", str(path)])
    text = err.getvalue()
    assert code in (2, 3), (code, data[:200], text, out.getvalue())
    assert "Traceback" not in text + out.getvalue()
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    # It names the file and says something about it ("is empty", "is not valid JSON (...)").
    assert str(path) in lines[0] and len(lines[0][7:].replace(str(path), "").split()) >= 2, text
    return code, lines[0]


def _nodes(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _nodes(child, (*path, key))
    elif isinstance(value, list):
        for n, child in enumerate(value):
            found += _nodes(child, (*path, n))
    return found


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = value.copy()
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


def _get(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


@SETTINGS
@given(data=st.binary(max_size=3000))
def test_arbitrary_bytes(target: Path, data: bytes) -> None:
    verify_refuses(target, data)


@SETTINGS
@given(value=json_value)
def test_arbitrary_json(target: Path, value: Any) -> None:
    code, line = verify_refuses(target, json.dumps(value).encode())
    if not isinstance(value, dict) or not {"kind", "schema_version", "signature"} & value.keys():
        assert code == 2 and "not a repro manifest" in line


@SETTINGS
@given(st.data())
def test_truncated_manifest(target: Path, smoke_run: Path, data: st.DataObject) -> None:
    content = smoke_run.read_bytes()
    cut = data.draw(st.integers(min_value=0, max_value=len(content.rstrip()) - 1))
    code, line = verify_refuses(target, content[:cut])
    assert code == 2 and ("not valid JSON" in line or "empty" in line), line


@SETTINGS
@given(st.data())
def test_a_field_replaced_by_a_value_of_any_type(target: Path, genuine: dict, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(_nodes(genuine)[1:]), label="path")
    new = data.draw(json_value, label="new")
    assume(canonical_bytes(new) != canonical_bytes(_get(genuine, path)))
    code, line = verify_refuses(target, json.dumps(_replace(genuine, path, new)).encode())
    newer = path == ("schema_version",) and type(new) is int and new > SCHEMA_VERSION
    assert (code, "upgrade repro" in line) == ((2, True) if newer else (3, False)), line


@SETTINGS
@given(version=json_leaf | st.integers())
def test_any_schema_version(target: Path, genuine: dict, version: Any) -> None:
    # The genuine version is the genuine manifest (its run folder is not beside ``target``: exit 4).
    assume(not (type(version) is int and version == SCHEMA_VERSION))
    code, line = verify_refuses(target, json.dumps({**genuine, "schema_version": version}).encode())
    if type(version) is int and version > SCHEMA_VERSION:
        assert code == 2 and f"schema version {version}" in line and "upgrade repro" in line
    else:
        assert code == 3, line  # a version repro never wrote: the signed content was changed


@SETTINGS
@given(st.data())
def test_a_character_of_the_file_replaced(target: Path, smoke_run: Path, data: st.DataObject) -> None:
    text = smoke_run.read_text()
    at = data.draw(st.integers(min_value=0, max_value=len(text) - 1), label="at")
    char = data.draw(st.characters(codec="utf-8"), label="char")
    changed = text[:at] + char + text[at + 1:]
    try:
        same = canonical_bytes(json.loads(changed)) == canonical_bytes(json.loads(text))
    except (ValueError, RecursionError, ReproError):
        same = False
    assume(not same)  # e.g. one space of indentation for another: the same manifest
    verify_refuses(target, changed.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b'{"[/]": 1, "[/]": 2}', "duplicate key '[/]'"),  # rich markup in a message is printed as is
        (b'{"schema_version": NaN}', "NaN"),
        (b'{"schema_version": 1e400}', "out of range"),
        (b'{"schema_version": ' + b"9" * 5000 + b"}", "number too long"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b"[" * 70 + b"]" * 70, "nested more than 64"),
        (b'{"kind": "\\ud800"}', "surrogate"),
        (b"[]", "not a JSON object"),
        (b'{"hello": "world"}', "not a repro manifest"),
        (b'{"kind": "repro.run-manifest"}', "has no signature"),
    ],
)
def test_specific_malformed_inputs(target: Path, data: bytes, message: str) -> None:
    _code, line = verify_refuses(target, data)
    assert message in line

