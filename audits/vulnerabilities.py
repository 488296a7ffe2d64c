"""Known vulnerabilities in the environment a run trained in, looked up with pip-audit.

The packages scanned are the ones the manifest recorded (``environment.distributions``, captured
in the training child), not the ones installed here: a pinned ``name==version`` requirements file
is written and given to pip-audit's command line (its Python modules are private) with
``--no-deps --disable-pip``, so pip-audit neither resolves nor installs anything; it only asks the
vulnerability service about each pin. ``--osv-url`` points the OSV service at a mirror.

Honesty is the point of this module. pip-audit reports a package it could not look up as
"skipped" and still prints "No known vulnerabilities found" with exit 0 (measured here: the PyPI
service answers 404 for every per-version lookup); an unreachable service makes it exit 1 with a
traceback and no report. Every package therefore gets one of three statuses, and only a package
the service actually answered for is ``no_known``:

- ``vulnerable``: the service named at least one vulnerability (ids, aliases, fixed versions);
- ``no_known``: the service answered and named none (which is not a proof of safety);
- ``not_checked``: anything else, with the reason (skipped, service unreachable, bad version...).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from packaging.version import InvalidVersion, Version
from pydantic import Field, HttpUrl

from repro.capture.environment import distribution_name
from repro.errors import ManifestFormatError
from repro.records.base import FrozenRecord
from repro.records.manifest import RunManifest

PackageStatus = Literal["vulnerable", "no_known", "not_checked"]
ScanVerdict = Literal["vulnerable", "no_known", "partial", "not_checked"]
"""``partial``: none known among the packages checked, but some could not be checked."""

_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
"""A distribution name (PEP 508), matched in full: ``$`` would let a trailing newline through."""


class _Model(FrozenRecord):
    """Frozen and strict, as every record (repro.records.base)."""


class ScanSettings(_Model):
    """How to look vulnerabilities up (the ``vulnerabilities`` part of the gate policy)."""

    service: Literal["pypi", "osv"] = Field(
        "pypi", description="pip-audit's service; 'osv' is implied when osv_url is set."
    )
    osv_url: HttpUrl | None = Field(None, description="An OSV-compatible /v1/query endpoint (a mirror).")
    timeout: int = Field(15, ge=1, le=600, description="Seconds pip-audit waits for one answer.")
    deadline: int = Field(600, ge=1, le=7200, description="Seconds the whole scan may take.")
    ignore: list[str] = Field(default_factory=list, description="Vulnerability ids (or aliases) accepted.")
    cache_dir: Path | None = Field(None, description="pip-audit's HTTP cache; default: pip-audit's own.")

    @property
    def effective_service(self) -> str:
        """The service actually asked."""
        return "osv" if self.osv_url is not None else self.service


class Vulnerability(_Model):
    """One known vulnerability of one package version."""

    id: str
    aliases: list[str] = Field(default_factory=list)
    fix_versions: list[str] = Field(default_factory=list, description="Versions that fix it; empty if none.")
    description: str | None = None
    ignored: bool = Field(False, description="Listed in the policy's ignore list.")


class PackageFinding(_Model):
    """What is known about one recorded distribution."""

    name: str
    version: str
    status: PackageStatus
    vulnerabilities: list[Vulnerability] = Field(default_factory=list)
    reason: str | None = Field(None, description="Why it was not checked, when it was not.")


class VulnerabilityReport(_Model):
    """The result of scanning one recorded environment."""

    schema_version: Literal[1] = 1
    tool: str = Field(description="The scanner and its version.")
    service: str
    osv_url: str | None
    packages: list[PackageFinding]
    error: str | None = Field(None, description="Why the scanner produced no result, when it did not.")

    def count(self, status: PackageStatus) -> int:
        """How many packages have ``status``."""
        return sum(p.status == status for p in self.packages)

    @property
    def verdict(self) -> ScanVerdict:
        """``vulnerable`` if any package is; else ``no_known`` only if every package was checked."""
        if self.count("vulnerable"):
            return "vulnerable"
        checked = self.count("no_known")
        if checked and checked == len(self.packages):
            return "no_known"
        return "partial" if checked else "not_checked"

    def summary(self) -> str:
        """One sentence for people: what was found (package, version, advisory) and what was not checked."""
        total, unchecked = len(self.packages), self.count("not_checked")
        vulnerable = [p for p in self.packages if p.status == "vulnerable"]
        ignored = sum(v.ignored for p in self.packages for v in p.vulnerabilities)
        if vulnerable:
            named = "; ".join(f"{p.name} {p.version} ({', '.join(v.id for v in p.vulnerabilities if not v.ignored)})"
                              for p in vulnerable)
            count = sum(not v.ignored for p in vulnerable for v in p.vulnerabilities)
            text = (f"{count} known {'vulnerability' if count == 1 else 'vulnerabilities'} in "
                    f"{len(vulnerable)} of {total} packages: {named}")
            if unchecked:
                text += f"; {unchecked} other packages NOT CHECKED"
        elif total and unchecked == total:
            text = f"NOT CHECKED: none of the {total} packages could be looked up"
        elif unchecked:
            text = (f"no known vulnerabilities in the {total - unchecked} packages checked, but {unchecked} of "
                    f"{total} packages were NOT CHECKED")
        else:
            text = f"no known vulnerabilities: all {total} packages checked"
        if ignored:
            text += f" ({ignored} ignored by policy)"
        return text + (f" ({self.error})" if self.error else "")


def pip_audit_version() -> str | None:
    """The installed pip-audit's version, or None if it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pip-audit")
    except PackageNotFoundError:
        return None


def _collisions(distributions: Mapping[str, str]) -> None:
    """Refuse two recorded names for one package: one answer would hide the other's (exit 2)."""
    seen: dict[str, str] = {}
    for name in sorted(distributions):
        if not _NAME.fullmatch(name):
            continue
        key = distribution_name(name)
        if key in seen:
            raise ManifestFormatError(
                f"the recorded environment names {seen[key]!r} and {name!r}, which are the same package "
                f"({key}); an environment has each package once, so this record cannot be scanned"
            )
        seen[key] = name


def requirements_text(distributions: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Pinned requirements for the scannable distributions, and the reason each other one is not.

    Names and versions come from a manifest, so they are untrusted input: pip-audit aborts the whole
    scan on one unparsable line, so each is checked in full here (no whitespace, no line breaks) and
    a bad one is set aside as not checked. Two names for one package raise
    :class:`~repro.errors.ManifestFormatError`.
    """
    _collisions(distributions)
    lines, rejected = [], {}
    for name, version in sorted(distributions.items()):
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            rejected[name] = f"{name!r} is not a valid distribution name"
            continue
        # packaging strips surrounding whitespace, so "1.0\n" would parse: refuse any whitespace.
        if not isinstance(version, str) or any(c.isspace() for c in version):
            rejected[name] = f"version {version!r} is not a PEP 440 version, so it cannot be looked up"
            continue
        try:
            Version(version)
        except InvalidVersion:
            rejected[name] = f"version {version!r} is not a PEP 440 version, so it cannot be looked up"
            continue
        lines.append(f"{name}=={version}")
    return "".join(line + "\n" for line in lines), rejected


def pip_audit_command(requirements: Path, output: Path, settings: ScanSettings) -> list[str]:
    """The pip-audit command line for a pinned requirements file."""
    command = [
        sys.executable, "-m", "pip_audit", "--requirement", str(requirements),
        # Pins are exact: no resolution, no virtual environment, no pip install, no index queries.
        "--no-deps", "--disable-pip",
        "--format", "json", "--output", str(output), "--desc", "on", "--aliases", "on",
        "--progress-spinner", "off", "--timeout", str(settings.timeout),
        "--vulnerability-service", settings.effective_service,
    ]
    if settings.osv_url is not None:
        command += ["--osv-url", str(settings.osv_url)]
    if settings.cache_dir is not None:
        command += ["--cache-dir", str(settings.cache_dir)]
    return command


_UNREACHABLE = (
    ("refused", "connection refused"),
    ("NameResolution", "host name not resolved"),
    ("Failed to resolve", "host name not resolved"),
    ("Temporary failure in name resolution", "host name not resolved"),
    ("timed out", "timed out"),
    ("Timeout", "timed out"),
    ("ConnectionError", "network error"),
    ("Max retries exceeded", "network error"),
)
_EXCEPTION_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception):\s*")


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("WARNING:")]
    return (lines[-1] if lines else "no message")[:300]


def failure_words(returncode: int, stderr: str, settings: ScanSettings) -> str:
    """Why pip-audit produced no report, in words; never a raw exception such as ``ConnectionError``."""
    where = str(settings.osv_url) if settings.osv_url else f"pip-audit's {settings.effective_service} service"
    reason = next((words for needle, words in _UNREACHABLE if needle in stderr), None)
    if reason is not None:
        return f"could not reach the vulnerability service ({where}): {reason}; is the network or mirror up?"
    message = _EXCEPTION_PREFIX.sub("", _last_error_line(stderr)) or "no message"
    return f"pip-audit exited {returncode} without a report: {message}"


def _parse_vulnerability(raw: Mapping[str, Any], ignore: set[str]) -> Vulnerability:
    ids = {raw["id"], *raw.get("aliases", [])}
    return Vulnerability(
        id=raw["id"], aliases=sorted(set(raw.get("aliases", [])) - {raw["id"]}),
        fix_versions=[str(v) for v in raw.get("fix_versions", [])],
        description=raw.get("description"), ignored=bool(ids & ignore),
    )


def _merged(deps: list[Mapping[str, Any]], ignore: set[str]) -> list[Vulnerability]:
    """Every vulnerability any of ``deps`` names, once per id."""
    found: dict[str, Vulnerability] = {}
    for dep in deps:
        for raw in dep.get("vulns", []):
            vuln = _parse_vulnerability(raw, ignore)
            found.setdefault(vuln.id, vuln)
    return list(found.values())


def findings_from_output(
    output: Mapping[str, Any], distributions: Mapping[str, str], ignore: set[str]
) -> list[PackageFinding]:
    """Turn pip-audit's JSON report into one finding per distribution in ``distributions``.

    Nothing the service returned is dropped: several entries for one package are merged, and an
    entry for a package the manifest did not name becomes a finding of its own.
    """
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for dep in output.get("dependencies", []):
        by_name.setdefault(distribution_name(dep["name"]), []).append(dep)
    findings = []
    for name, version in sorted(distributions.items()):
        deps = by_name.pop(distribution_name(name), [])
        vulns = _merged(deps, ignore)
        answered = [d for d in deps if "skip_reason" not in d]
        if vulns:
            active = [v for v in vulns if not v.ignored]
            findings.append(PackageFinding(name=name, version=version,
                                           status="vulnerable" if active else "no_known", vulnerabilities=vulns))
        elif not deps:
            findings.append(PackageFinding(name=name, version=version, status="not_checked",
                                           reason="pip-audit did not report on it"))
        elif not answered:
            findings.append(PackageFinding(name=name, version=version, status="not_checked",
                                           reason=str(deps[0]["skip_reason"])))
        else:
            findings.append(PackageFinding(name=name, version=version, status="no_known"))
    for deps in by_name.values():  # answers about packages the manifest did not name: kept, not dropped
        vulns = _merged(deps, ignore)
        if vulns:
            findings.append(PackageFinding(
                name=str(deps[0]["name"]), version=str(deps[0].get("version", "")), vulnerabilities=vulns,
                status="vulnerable" if any(not v.ignored for v in vulns) else "no_known",
            ))
    return findings


def scan_distributions(distributions: Mapping[str, str], settings: ScanSettings | None = None) -> VulnerabilityReport:
    """Look every distribution up with pip-audit; never raises for a failed lookup.

    Whatever pip-audit could not answer for comes back ``not_checked`` with the reason, so a
    caller can never mistake "nothing could be checked" for "nothing was found".
    """
    settings = settings or ScanSettings()
    version = pip_audit_version()
    text, rejected = requirements_text(distributions)
    unchecked = {name: PackageFinding(name=name, version=distributions[name], status="not_checked", reason=why)
                 for name, why in rejected.items()}
    scannable = {n: v for n, v in distributions.items() if n not in rejected}

    def make_report(packages: list[PackageFinding], error: str | None = None) -> VulnerabilityReport:
        return VulnerabilityReport(tool=f"pip-audit {version}" if version else "pip-audit (not installed)",
                                   service=settings.effective_service,
                                   osv_url=str(settings.osv_url) if settings.osv_url else None,
                                   packages=sorted([*packages, *unchecked.values()], key=lambda p: p.name),
                                   error=error)

    def everything_unchecked(error: str) -> VulnerabilityReport:
        packages = [PackageFinding(name=n, version=v, status="not_checked", reason=error) for n, v in scannable.items()]
        return make_report(packages, error)

    if version is None:
        return everything_unchecked("pip-audit is not installed; install it to scan for vulnerabilities")
    if not scannable:
        return everything_unchecked("no distribution could be scanned")
    with tempfile.TemporaryDirectory(prefix="repro-pip-audit-") as tmp:
        requirements, output = Path(tmp) / "requirements.txt", Path(tmp) / "pip-audit.json"
        requirements.write_text(text, encoding="utf-8")
        try:
            done = subprocess.run(pip_audit_command(requirements, output, settings), capture_output=True,
                                  text=True, timeout=settings.deadline, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            return everything_unchecked(f"pip-audit did not finish within {settings.deadline} s")
        # Exit 1 with a report means "vulnerabilities found"; exit 1 without one means it failed.
        if not output.is_file():
            return everything_unchecked(failure_words(done.returncode, done.stderr, settings))
        try:
            parsed = json.loads(output.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return everything_unchecked(f"pip-audit wrote an unreadable report: {exc}")
    try:
        findings = findings_from_output(parsed, scannable, set(settings.ignore))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        return everything_unchecked(f"pip-audit's report has an unexpected shape ({type(exc).__name__}: {exc})")
    return make_report(findings)


def scan_manifest(manifest: RunManifest, settings: ScanSettings | None = None) -> VulnerabilityReport:
    """Scan the environment a manifest recorded (not the one installed here)."""
    return scan_distributions(manifest.environment.distributions, settings)
