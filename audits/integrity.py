"""The audit's first step: is the manifest authentic, and is everything it names still here?

Everything ``repro verify`` checks (through the same :func:`repro.trust.verify.verify_manifest`),
split in two. The signature (and trust list), the tokenizer,
the checkpoints and other artifacts belong to the recorded run: a changed one is an integrity
failure (exit 3) and a missing one means the audit cannot be done (exit 4), so nothing is rerun.
The data files belong to *this* machine: they are checked here, before any compute, and a
difference is reported by file name. By default the audit then stops (:class:`DataChangedError`,
exit 3 as in ``verify``: a rerun on other data says nothing about the recorded run); with
``allow_data_change`` it goes on and the data difference is attributed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from repro.audits.report import DataCheck
from repro.errors import DataChangedError, MissingArtifactError
from repro.records.manifest_file import LoadedManifest
from repro.trust.keys import load_trusted_keys, local_key_id
from repro.trust.verify import ArtifactCheck, VerifyResult, verify_manifest

__all__ = ["DataChangedError", "IntegrityResult", "check_integrity"]


@dataclass(frozen=True)
class IntegrityResult:
    """An authentic manifest whose artifacts are all present and unchanged, and its data checks."""

    verified: VerifyResult
    data: list[DataCheck]

    @property
    def loaded(self) -> LoadedManifest:
        """The verified manifest."""
        return self.verified.loaded

    @property
    def key_id(self) -> str:
        """Who signed it."""
        return self.verified.key_id

    @property
    def trusted(self) -> bool:
        """Whether the signer was checked against a trust list."""
        return self.verified.trusted

    @property
    def imports_trusted(self) -> bool:
        """Whether a module the manifest names may be imported for the rerun: the signer is on the
        trust list, or the signer is this user's own signing key (their own run, their own plugin).
        A stranger's key, checked against no list, is not trusted for imports."""
        return self.trusted or self.key_id == local_key_id()

    @property
    def artifacts(self) -> list[ArtifactCheck]:
        """The run's own files, all unchanged."""
        return self.verified.artifacts

    @property
    def data_changed(self) -> list[DataCheck]:
        """Data checks that did not pass."""
        return [c for c in self.data if c.status != "ok"]


def _names(checks: list[DataCheck], limit: int = 5) -> str:
    names = ", ".join(c.path for c in checks[:limit])
    return names + (f" and {len(checks) - limit} more" if len(checks) > limit else "")


def verify_for_audit(path: Path, trusted_keys: Path | None, data_path: Path | None = None) -> VerifyResult:
    """:func:`repro.trust.verify.verify_manifest` with the trust list file, data differences reported
    (``data_path``: the user's ``--data``, where to look for the recorded data instead)."""
    trusted = load_trusted_keys(trusted_keys) if trusted_keys is not None else None
    return verify_manifest(Path(path), trusted, data="report", data_path=data_path)


def check_integrity(verified: VerifyResult, allow_data_change: bool) -> IntegrityResult:
    """Judge a verified manifest's data checks: raise unless the data is here and unchanged (or allowed).

    Raises :class:`DataChangedError` (exit 3) for a changed data file unless ``allow_data_change``,
    then :class:`MissingArtifactError` (exit 4) for a missing one: the order ``repro verify`` uses.
    """
    data = [DataCheck(kind=c.kind, path=c.path, status=c.status) for c in verified.data]
    # The order is verify's (repro.trust.verify.raise_for_checks): a changed file is evidence about
    # the run (exit 3) and outranks a missing one, which only means it cannot be checked (exit 4).
    changed = [c for c in data if c.status == "changed"]
    if changed and not allow_data_change:
        raise DataChangedError(
            f"data differs from the recorded run: {_names(changed)} changed since it was recorded; "
            "a rerun on other data cannot tell whether the run reproduces. Restore the recorded "
            "data, or pass --allow-data-change to rerun anyway and see the effect"
        )
    missing = [c for c in data if c.status == "missing"]
    if missing:
        looked = next((c.detail for c in verified.data if c.status == "missing" and c.detail), "")
        raise MissingArtifactError(
            f"{len(missing)} data file(s) of the run are missing here: {_names(missing)}"
            + (f" ({looked})" if looked else "")
            + "; restore the recorded data, or point at it with --data PATH (accepted only if it hashes as recorded)"
        )
    return IntegrityResult(verified=verified, data=data)
