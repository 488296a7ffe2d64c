"""The release gate's policy: ``[tool.repro.gate]`` in the repository's ``pyproject.toml``.

A gate that silently passes is worse than none, so the policy is strict: the table must exist,
name at least one manifest and a trust list, and every key is validated (unknown keys are errors,
so a typo cannot switch a check off). Paths are relative to the folder of the ``pyproject.toml``.

Example (this repository's own policy is the reference)::

    [tool.repro.gate]
    manifests = ["manifests/reference/smoke.json"]
    trusted_keys = "manifests/trusted-keys.txt"
    mode = "full"            # or "steps" (with steps = N) or "segments" (with segments = K, seed = S)
    device = "cpu"           # rerun device; omit for "as recorded"

    [tool.repro.gate.tolerance]      # when bits differ, how close still counts as reproduced
    atol = 1e-5
    rtol = 1e-4
    tensor_rtol = 1e-3

    [tool.repro.gate.vulnerabilities]
    service = "pypi"         # or "osv"; osv_url = "https://mirror.example/v1/query" implies osv
    fail_on_vulnerable = true
    on_unchecked = "warn"    # or "fail": packages the service could not answer for
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from repro.audits.options import DEFAULT_MAX_STEPS, AuditOptions, Tolerance
from repro.audits.vulnerabilities import ScanSettings
from repro.errors import UsageError
from repro.records.base import FrozenRecord
from repro.records.validation import describe
from repro.trust.limits import Limits

POLICY_TABLE = "tool.repro.gate"


class PolicyError(UsageError):
    """The gate's policy is missing or invalid (exit 2): nothing was checked."""


class VulnerabilityPolicy(ScanSettings):
    """How the gate scans each recorded environment and what it does with the result."""

    enabled: bool = Field(True, description="Scan the recorded environments at all.")
    fail_on_vulnerable: bool = Field(True, description="A known, not ignored vulnerability fails the gate.")
    on_unchecked: Literal["warn", "fail"] = Field(
        "warn",
        description="Packages the service could not answer for: a warning in the report (never a "
        "'clean' claim), or a failure of the gate (exit 4).",
    )


class GatePolicy(FrozenRecord):
    """``[tool.repro.gate]``: which runs must reproduce, how they are audited, what else is checked."""

    manifests: list[Path] = Field(min_length=1, description="Signed manifests that must reproduce.")
    trusted_keys: Path = Field(description="Trust list; a manifest signed by any other key fails (exit 3).")
    mode: Literal["full", "steps", "segments"] = Field("full", description="Rerun everything, a prefix, or spot-check.")
    steps: int | None = Field(None, ge=1, description="mode = 'steps': audit the first N steps.")
    segments: int | None = Field(None, ge=1, description="mode = 'segments': replay K random segments.")
    seed: int | None = Field(None, ge=0, description="mode = 'segments': seed of the segment choice.")
    device: Literal["cpu", "cuda"] | None = Field(None, description="Rerun device; default: as recorded.")
    threads: int | None = Field(None, ge=1, le=512, description="Rerun threads; default: as recorded.")
    tolerance: Tolerance = Field(default_factory=Tolerance)
    max_steps: int = Field(DEFAULT_MAX_STEPS, ge=1, description="Refuse, before compute, to replay more steps.")
    limits: Limits = Field(default_factory=Limits, description="Bounds on every count a manifest controls.")
    vulnerabilities: VulnerabilityPolicy = Field(default_factory=VulnerabilityPolicy)
    data: Path | None = Field(
        None, description="Where the runs' data is, for data recorded outside the repository (as `repro audit "
        "--data`); accepted only if every file hashes as recorded.",
    )

    @model_validator(mode="after")
    def _mode_matches_counts(self) -> GatePolicy:
        if self.mode == "steps" and self.steps is None:
            raise ValueError("mode = 'steps' needs steps = N")
        if self.mode == "segments" and self.segments is None:
            raise ValueError("mode = 'segments' needs segments = K")
        if self.mode != "steps" and self.steps is not None:
            raise ValueError(f"steps is only used with mode = 'steps' (mode is {self.mode!r})")
        if self.mode != "segments" and (self.segments is not None or self.seed is not None):
            raise ValueError(f"segments and seed are only used with mode = 'segments' (mode is {self.mode!r})")
        return self



class LoadedPolicy(BaseModel):
    """A validated policy, the file it came from, and the folder its relative paths start from."""

    model_config = ConfigDict(frozen=True)

    policy: GatePolicy
    source: Path
    root: Path

    def resolve(self, path: Path) -> Path:
        """A policy path, made absolute against the policy's folder."""
        return path if path.is_absolute() else self.root / path

    @property
    def manifests(self) -> list[Path]:
        """The manifests to gate on, as absolute paths."""
        return [self.resolve(p) for p in self.policy.manifests]

    def audit_options(self) -> AuditOptions:
        """The options every manifest is audited with."""
        p = self.policy
        return AuditOptions(
            trusted_keys=self.resolve(p.trusted_keys), steps=p.steps, segments=p.segments, seed=p.seed,
            device=p.device, threads=p.threads, tolerance=p.tolerance, code_path=self.root, max_steps=p.max_steps,
            data=self.resolve(p.data) if p.data is not None else None,
            limits=p.limits, limits_from="policy",
        )

    def scan_settings(self) -> ScanSettings:
        """The vulnerability scan's settings (its cache folder resolved like other paths)."""
        v = self.policy.vulnerabilities
        fields = {name: getattr(v, name) for name in ScanSettings.model_fields}
        if v.cache_dir is not None:
            fields["cache_dir"] = self.resolve(v.cache_dir)
        return ScanSettings(**fields)


def _describe(exc: ValidationError) -> str:
    return describe(exc, limit=3, empty="(table)") + _suggestion(exc)


def _suggestion(exc: ValidationError) -> str:
    """``; did you mean 'x'?`` for the first unknown field that is close to a known one."""
    import difflib

    for error in exc.errors():
        if error["type"] != "extra_forbidden":
            continue
        model: Any = GatePolicy
        for part in error["loc"][:-1]:  # a nested table: tolerance, vulnerabilities
            field = model.model_fields.get(part) if isinstance(part, str) else None
            model = field.annotation if field is not None else None
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                break
        else:
            name = str(error["loc"][-1])
            match = difflib.get_close_matches(name, list(model.model_fields), n=1, cutoff=0.6)
            if match:
                return f"; did you mean {match[0]!r} instead of {name!r}?"
    return ""


def policy_from_table(table: Any, source: Path) -> LoadedPolicy:
    """Validate a parsed ``[tool.repro.gate]`` table from ``source`` (relative paths start beside it)."""
    if not isinstance(table, dict):
        raise PolicyError(f"{source}: [{POLICY_TABLE}] must be a table")
    try:
        policy = GatePolicy.model_validate(table)
    except ValidationError as exc:
        raise PolicyError(f"{source}: invalid [{POLICY_TABLE}] policy: {_describe(exc)}") from None
    source = Path(source).resolve()
    loaded = LoadedPolicy(policy=policy, source=source, root=source.parent)
    _check_trust_list(loaded)
    return loaded


def _check_trust_list(loaded: LoadedPolicy) -> None:
    """An unusable trust list is a policy error before any audit, never "no trust list"."""
    from repro.errors import InputError
    from repro.trust.keys import load_trusted_keys

    try:
        load_trusted_keys(loaded.resolve(loaded.policy.trusted_keys))
    except InputError as exc:
        raise PolicyError(f"{loaded.source}: trusted_keys: {exc}") from None


def load_policy(pyproject: Path) -> LoadedPolicy:
    """Read and validate the gate policy from a ``pyproject.toml``; a missing one is an error."""
    pyproject = Path(pyproject)
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(
            f"{pyproject} does not exist; run the gate from the repository root or pass --config"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read {pyproject}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{pyproject} is not valid TOML: {exc}") from None
    table: Any = data
    for part in ("tool", "repro", "gate"):  # any of them may be something other than a table
        table = table.get(part) if isinstance(table, dict) else None
    if table is None:
        raise PolicyError(
            f"{pyproject} has no [{POLICY_TABLE}] table, so the gate has nothing to check; add one "
            "naming the manifests and the trust list (see docs/ci.md)"
        )
    return policy_from_table(table, pyproject)
