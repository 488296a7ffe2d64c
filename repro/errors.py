"""The exception hierarchy of repro.

Every failure a user can cause or meet is one of these types. Each message says what is wrong and
what to do about it, in one line. Only the CLI (``repro.cli``) turns them into exit codes, so the
mapping lives in exactly one place; library code raises and never exits.
"""

from __future__ import annotations


class ReproError(Exception):
    """Base of every error repro reports to a user."""


# -- usage and input (exit 2) -------------------------------------------------------------------
class UsageError(ReproError):
    """A command was called wrongly: bad option, unknown preset, invalid override."""


class InputError(ReproError):
    """An input file cannot be used: unreadable, malformed, empty, wrong schema version."""


class ManifestFormatError(InputError):
    """A manifest is not valid JSON or does not match the manifest schema."""


class OutputError(ReproError):
    """An output cannot be written: folder missing or read-only, permission denied, disk full."""


# -- integrity (exit 3) ---------------------------------------------------------------------------
class IntegrityError(ReproError):
    """What was recorded and what is here do not match, or the record is not authentic."""


class SignatureError(IntegrityError):
    """A manifest's signature does not verify over its contents."""


class UntrustedKeyError(IntegrityError):
    """A manifest is validly signed, but by a key that is not in the trust list."""


class ArtifactMismatchError(IntegrityError):
    """A file the manifest names (data, tokenizer, checkpoint) has different bytes now."""


class SigningKeyError(ReproError):
    """A signing key is missing, malformed or unsafely stored (exit 2)."""


# -- could not check (exit 4) ---------------------------------------------------------------------
class CouldNotCheckError(ReproError):
    """The check could not be carried out; nothing is claimed about reproducibility."""


class MissingArtifactError(CouldNotCheckError):
    """A file the manifest names is not there."""


class IncompleteRunError(CouldNotCheckError):
    """The manifest belongs to a run that did not finish."""


class DeviceUnavailableError(CouldNotCheckError):
    """The requested device (e.g. CUDA) is not available here."""


class TrainerNotFoundError(CouldNotCheckError):
    """The trainer plugin a run needs is not installed."""


class TrainerError(CouldNotCheckError):
    """A trainer plugin failed or broke the trainer contract; the message names the trainer."""


class ReplicaDriftError(CouldNotCheckError):
    """A data-parallel rank's model state drifted from rank 0's: the run cannot be trusted (exit 4)."""
