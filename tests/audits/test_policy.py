"""The gate's policy: a missing or invalid ``[tool.repro.gate]`` is a clear error (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.audits.policy import PolicyError, load_policy
from repro.cli import main

GOOD = """
[tool.repro.gate]
manifests = ["manifests/run.json"]
trusted_keys = "keys.txt"
mode = "segments"
segments = 1
seed = 7
device = "cpu"

[tool.repro.gate.tolerance]
atol = 0.0
rtol = 1e-6

[tool.repro.gate.vulnerabilities]
osv_url = "http://127.0.0.1:8080/v1/query"
on_unchecked = "fail"
ignore = ["PYSEC-0000-1"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    return path


def _trust_list(tmp_path: Path, text: str | None = None) -> None:
    from repro.trust.keys import generate_key

    if text is None:
        text = generate_key(tmp_path / "signer.pem").public_line()
    (tmp_path / "keys.txt").write_text(text)


def test_a_valid_policy_resolves_paths_beside_the_pyproject(tmp_path: Path) -> None:
    _trust_list(tmp_path)
    loaded = load_policy(_write(tmp_path, GOOD))
    assert loaded.manifests == [tmp_path.resolve() / "manifests/run.json"]
    options = loaded.audit_options()
    assert options.trusted_keys == tmp_path.resolve() / "keys.txt"
    assert (options.segments, options.seed, options.steps, options.device) == (1, 7, None, "cpu")
    assert (options.tolerance.atol, options.tolerance.rtol) == (0.0, 1e-6)
    scan = loaded.scan_settings()
    assert scan.effective_service == "osv" and scan.ignore == ["PYSEC-0000-1"]


@pytest.mark.parametrize("text, message", [
    ("[project]\nname = 'x'\n", "no [tool.repro.gate] table"),
    ("[tool.repro.gate]\ntrusted_keys = 'k'\n", "manifests: Field required"),
    ("[tool.repro.gate]\nmanifests = []\ntrusted_keys = 'k'\n", "manifests: List should have at least 1 item"),
    ("[tool.repro.gate]\nmanifests = ['m.json']\n", "trusted_keys: Field required"),
    ("[tool.repro.gate]\nmanifests = ['m.json']\ntrusted_keys = 'k'\nmodee = 'full'\n", "modee: Extra inputs"),
    ("[tool.repro.gate]\nmanifests = ['m.json']\ntrusted_keys = 'k'\nmode = 'steps'\n", "needs steps = N"),
    ("[tool.repro.gate]\nmanifests = ['m.json']\ntrusted_keys = 'k'\nsteps = 5\n", "only used with mode = 'steps'"),
    ("[tool.repro.gate]\nmanifests = ['m.json']\ntrusted_keys = 'k'\n[tool.repro.gate.vulnerabilities]\n"
     "on_unchecked = 'ignore'\n", "vulnerabilities.on_unchecked"),
    ("[tool.repro.gate]\nmanifests = ['m.json']\ntrusted_keys = 'k'\n[tool.repro.gate.vulnerabilities]\n"
     "osv_url = 'not a url'\n", "vulnerabilities.osv_url"),
    ("[tool.repro.gate\n", "not valid TOML"),
])
def test_bad_policies_are_rejected_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_policy(_write(tmp_path, text))


def test_gate_exits_2_without_a_policy(tmp_path: Path, capsys) -> None:
    assert main(["gate", "--config", str(tmp_path / "pyproject.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["gate", "--config", str(_write(tmp_path, "[project]\nname = 'x'\n"))]) == 2
    assert "has no [tool.repro.gate] table" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "message"), [
    (None, "keys.txt does not exist"),
    ("", "names no keys"),
    ("  \n\t\n# only a comment\n", "names no keys"),
    ("ed25519 AAAA\n", "keys.txt:1: an Ed25519 public key is 32 bytes"),
])
def test_an_unusable_policy_trust_list_is_a_policy_error_never_no_trust_list(
    tmp_path: Path, text: str | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if text is not None:
        _trust_list(tmp_path, text)
    config = _write(tmp_path, GOOD)
    with pytest.raises(PolicyError, match=f"trusted_keys: .*{message}"):
        load_policy(config)
    assert main(["gate", "--config", str(config)]) == 2
    assert message in capsys.readouterr().err
