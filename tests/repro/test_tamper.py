"""Tampering: every single-field change to a manifest, and every changed byte of a file
it names, is caught by `repro verify` as an integrity failure (exit 3) that says what changed.

The field walk goes through :func:`repro.trust.verify._authenticate` in-process (the same function
`repro verify` runs, minus reading the file and hashing artifacts) so that thousands of cases take
seconds; a sample goes through the CLI end to end.
"""

# mypy: disable-error-code="misc"
# (the mutation lambdas take loop values as default arguments, whose types mypy cannot infer)
from __future__ import annotations

import base64
import json
import math
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from repro.cli.app import exit_code_for, main
from repro.errors import ManifestFormatError, ReproError
from repro.records.manifest_file import load_manifest
from repro.trust.keys import generate_key
from repro.trust.signing import sign_body
from repro.trust.verify import _authenticate

Mutation = tuple[str, Callable[[Any], Any]]


def _with(root: Any, path: tuple, change: Callable[[Any], Any]) -> Any:
    """A copy of ``root`` with the container at ``path`` replaced by ``change(copy of it)``.

    Only the containers along ``path`` are copied, so each mutation costs little.
    """
    if not path:
        return change(root.copy())
    head, rest = path[0], path[1:]
    copy = root.copy()
    copy[head] = _with(root[head], rest, change)
    return copy


def _set(container: Any, index: Any, value: Any) -> Any:
    if isinstance(container, dict):
        return {**container, index: value}
    return [*container[:index], value, *container[index + 1:]]


def _changed_leaf(value: Any) -> list[tuple[str, Any]]:
    """A same-type change and a type change of a JSON leaf."""
    same: Any
    if isinstance(value, bool):
        same = not value
    elif isinstance(value, int):
        same = value + 1
    elif isinstance(value, float):
        same = math.nextafter(value, math.inf)  # one ulp: the smallest change there is
    elif isinstance(value, str):  # one character, mid-string (in base64: data, not padding)
        mid = len(value) // 2
        same = value[:mid] + ("A" if value[mid:mid + 1] != "A" else "B") + value[mid + 1:]
    else:
        same = 0
    return [("changed", same), ("retyped", None if value is not None else "null")]


def mutations(node: Any, path: tuple = ()) -> Iterator[tuple[str, tuple, Callable[[Any], Any]]]:
    """Every single-field change of a JSON document: (label, path, change of the parent)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (f"remove {key}", path, lambda d, k=key: {x: v for x, v in d.items() if x != k})
            yield (f"rename {key}", path, lambda d, k=key: {(x + "~" if x == k else x): v for x, v in d.items()})
            if isinstance(value, (dict, list)):
                yield from mutations(value, (*path, key))
            else:
                for label, new in _changed_leaf(value):
                    yield (f"{label} {key}", path, lambda d, k=key, n=new: {**d, k: n})
        yield ("add a field", path, lambda d: {**d, "added": None})
    elif isinstance(node, list):
        parent, index = path[:-1], path[-1]
        if node:
            yield ("truncate", parent, lambda d, i=index: _set(d, i, d[i][:-1]))
            yield ("drop first", parent, lambda d, i=index: _set(d, i, d[i][1:]))
        yield ("append", parent, lambda d, i=index: _set(d, i, d[i] + [d[i][-1] if d[i] else None]))
        for n, value in enumerate(node):
            if isinstance(value, (dict, list)):
                yield from mutations(value, (*path, n))
            else:
                for label, new in _changed_leaf(value):
                    yield (f"{label} [{n}]", path, lambda lst, j=n, v=new: [*lst[:j], v, *lst[j + 1:]])


def _where(path: tuple) -> str:
    return "/".join(str(p) for p in path) or "(top)"


def test_every_single_field_change_is_an_integrity_failure(smoke_run: Path) -> None:
    raw = json.loads(smoke_run.read_text())
    _authenticate(raw, smoke_run, None)  # the untouched manifest passes
    cases = list(mutations(raw))
    assert len(cases) > 2000, len(cases)
    undetected, wrong_code = [], []
    for label, path, change in cases:
        tampered = _with(raw, path, change)
        assert tampered != raw, (label, path)
        try:
            _authenticate(tampered, smoke_run, None)
        except ReproError as exc:
            code = exit_code_for(exc)
            # The version says how the rest is read: a newer one cannot be judged here (see
            # docs/security.md); any other edit, schema-breaking or not, is tampering.
            if (path, label) == ((), "changed schema_version"):
                if not (isinstance(exc, ManifestFormatError) and "upgrade repro" in str(exc)):
                    wrong_code.append((label, _where(path), code, str(exc)))
            elif code != 3:
                wrong_code.append((label, _where(path), code, str(exc)))
        else:
            undetected.append((label, _where(path)))
    assert undetected == [], f"{len(undetected)} of {len(cases)} changes undetected: {undetected[:10]}"
    assert wrong_code == [], f"{len(wrong_code)} changes with another exit code: {wrong_code[:5]}"


def test_tampered_manifests_fail_through_the_cli(smoke_copy: Path, capsys: pytest.CaptureFixture) -> None:
    raw = json.loads(smoke_copy.read_text())
    cases = list(mutations(raw))
    for label, path, change in random.Random(6).sample(cases, 25):
        if (path, label) == ((), "changed schema_version"):
            continue
        smoke_copy.write_text(json.dumps(_with(raw, path, change), indent=1))
        assert main(["verify", str(smoke_copy)]) == 3, (label, _where(path))
        err = capsys.readouterr().err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err


def _resigned(raw: dict, key_path: Path) -> dict:
    body = {k: v for k, v in raw.items() if k != "signature"}
    return {**body, "signature": sign_body(body, generate_key(key_path)).model_dump(mode="json")}


def test_signature_or_public_key_replaced(smoke_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raw = json.loads(smoke_copy.read_text())
    other = _resigned({**raw, "validation": raw["validation"][:1]}, tmp_path / "other.pem")
    # The signature of another document, and a public key (with its matching id) of another key.
    for block in (
        {**raw["signature"], "value": other["signature"]["value"]},
        {**raw["signature"], "public_key": other["signature"]["public_key"], "key_id": other["signature"]["key_id"]},
    ):
        smoke_copy.write_text(json.dumps({**raw, "signature": block}))
        assert main(["verify", str(smoke_copy)]) == 3
        assert "does not match its contents" in capsys.readouterr().err


def _non_canonical(encoded: str) -> str:
    """Another base64 spelling of the same bytes: the last data character's spare bits set."""
    padding = len(encoded) - len(encoded.rstrip("="))
    spare = {1: 0b11, 2: 0b1111}[padding]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = len(encoded) - padding - 1
    variant = alphabet[alphabet.index(encoded[last]) ^ spare]
    changed = encoded[:last] + variant + encoded[last + 1:]
    assert base64.b64decode(changed) == base64.b64decode(encoded) and changed != encoded
    return changed


@pytest.mark.parametrize("field", ["public_key", "value"])
def test_another_base64_spelling_of_the_same_signature_is_refused(
    field: str, smoke_copy: Path, capsys: pytest.CaptureFixture
) -> None:
    """Base64 has spare bits; accepting any spelling would let a character change unnoticed."""
    raw = json.loads(smoke_copy.read_text())
    block = {**raw["signature"], field: _non_canonical(raw["signature"][field])}
    smoke_copy.write_text(json.dumps({**raw, "signature": block}))
    assert main(["verify", str(smoke_copy)]) == 3
    assert "canonical base64" in capsys.readouterr().err


def test_resigning_with_another_key_needs_a_trust_list_to_be_caught(
    smoke_copy: Path, tmp_path: Path, repro_home: Path, capsys: pytest.CaptureFixture
) -> None:
    """A whole new signature by another key is a valid signature: only a trust list rejects it."""
    raw = json.loads(smoke_copy.read_text())
    smoke_copy.write_text(json.dumps(_resigned(raw, tmp_path / "attacker.pem")))
    assert main(["verify", str(smoke_copy)]) == 0
    assert "not checked against a trust list" in capsys.readouterr().out
    ours = repro_home / "key.pem.pub"
    assert main(["verify", str(smoke_copy), "--trusted-keys", str(ours)]) == 3
    assert "not in the trust list" in capsys.readouterr().err


def _flip_byte(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_any_named_file_is_caught_and_named(
    smoke_copy: Path, capsys: pytest.CaptureFixture
) -> None:
    m = load_manifest(smoke_copy).manifest
    assert m.data.tokenizer is not None
    named = [m.data.tokenizer.path] + [c.path for c in m.checkpoints] + [a.path for a in m.artifacts]
    assert len(named) >= 4
    rng = random.Random(1)
    for rel in named:
        path = smoke_copy.parent / rel
        original = path.read_bytes()
        _flip_byte(path, rng)
        assert main(["verify", str(smoke_copy)]) == 3, rel
        err = capsys.readouterr().err
        assert "changed since the run" in err and rel in err, err
        path.write_bytes(original)
    assert main(["verify", str(smoke_copy)]) == 0


@pytest.fixture(scope="module")
def data_run(tmp_path_factory: pytest.TempPathFactory, smoke_run: Path) -> Path:
    """A smoke run on `--data`: a folder with copies of the two plays the smoke preset reads."""
    base = tmp_path_factory.mktemp("data-run")
    m = load_manifest(smoke_run).manifest
    from repro.trust.verify import data_source_root

    root = data_source_root(m.data.source)
    assert root is not None
    corpus = base / "corpus"
    corpus.mkdir()
    for n, f in enumerate(m.data.files):  # numbered: same order, same corpus, cached tokenizer
        shutil.copyfile(root / f.path, corpus / f"{n}-{Path(f.path).name}")
    out = base / "out" / "run.json"
    assert main(["run", "smoke", "--data", str(corpus), "--out", str(out)]) == 0
    return out


def test_a_flipped_byte_in_a_data_file_is_caught_and_named(
    data_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    m = load_manifest(data_run).manifest
    assert m.data.source.kind == "path" and len(m.data.files) == 2
    corpus = Path(m.data.source.name)
    victim = corpus / m.data.files[1].path
    original = victim.read_bytes()
    try:
        _flip_byte(victim, random.Random(2))
        capsys.readouterr()
        assert main(["verify", str(data_run)]) == 3
        err = capsys.readouterr().err
        assert f"data {m.data.files[1].path}" in err and "changed since the run" in err, err
    finally:
        victim.write_bytes(original)
    assert main(["verify", str(data_run)]) == 0
