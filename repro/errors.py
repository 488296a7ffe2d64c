"""The exception hierarchy of repro and the exit codes it maps to: the one source of both.

Every failure a user can cause or meet is one of these types. Each message says what is wrong and
what to do about it, in one line. Each class carries its exit code (``exit_code``), so every
command gives the same code for the same condition; library code raises and never exits, and only
the CLI (``repro.cli.app.main``) turns an error into its code. Nothing else holds a copy of the map.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes of every ``repro`` command (README, "Exit codes")."""

    OK = 0
    """Verified, reproduced, gate passed."""
    NOT_REPRODUCED = 1
    """An audit or gate ran and the run did not reproduce (or a forbidden vulnerability was found)."""
    USAGE = 2
    """Usage or input error: bad arguments, malformed or unreadable input, bad key, unwritable output."""
    INTEGRITY = 3
    """Integrity failure: bad signature, untrusted key, an artifact or data file differs."""
    COULD_NOT_CHECK = 4
    """Could not check: missing artifact, unfinished run, device or trainer unavailable, child died."""
    INTERNAL = 70
    """A bug in repro (an unexpected exception); EX_SOFTWARE of sysexits.h. Never 1, which CI reads
    as "not reproduced". The traceback is written to a file the one-line message names."""
    INTERRUPTED = 130
    """Interrupted by Ctrl-C (SIGINT) or SIGTERM (handled alike), as shells report SIGINT."""


class ReproError(Exception):
    """Base of every error repro reports to a user; raise a subclass, which says the category.

    ``exit_code`` is a class attribute; an instance may override it (an error sent back by the
    training child keeps the category it had there, see :mod:`repro.running.launcher`).
    """

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, *args: object) -> None:
        # Bounded: a message can carry text from a manifest, a file or a child process, and is
        # copied into reports (the gate's JSON, JUnit, summary); one line must not be megabytes.
        if len(args) == 1 and isinstance(args[0], str) and len(args[0]) > MAX_MESSAGE_CHARS:
            text = args[0]
            args = (f"{text[:MAX_MESSAGE_CHARS]}… ({len(text) - MAX_MESSAGE_CHARS:,} more characters not shown)",)
        super().__init__(*args)


MAX_MESSAGE_CHARS = 4000
"""Longest error message repro reports (longer ones are cut, saying how much was left out)."""


# -- usage and input (exit 2) -------------------------------------------------------------------
class UsageError(ReproError):
    """A command was called wrongly: bad option, unknown preset, invalid override."""

    exit_code = ExitCode.USAGE


class InputError(ReproError):
    """An input file cannot be used: unreadable, malformed, empty, wrong schema version."""

    exit_code = ExitCode.USAGE


class ManifestFormatError(InputError):
    """A manifest is not valid JSON or does not match the manifest schema."""


class OutputError(ReproError):
    """An output cannot be written: folder missing or read-only, permission denied, disk full."""

    exit_code = ExitCode.USAGE


class SigningKeyError(ReproError):
    """A signing key is missing, malformed or unsafely stored (exit 2)."""

    exit_code = ExitCode.USAGE


# -- integrity (exit 3) ---------------------------------------------------------------------------
class IntegrityError(ReproError):
    """What was recorded and what is here do not match, or the record is not authentic."""

    exit_code = ExitCode.INTEGRITY


class SignatureError(IntegrityError):
    """A manifest's signature does not verify over its contents (or its public key is unusable)."""


class UntrustedKeyError(IntegrityError):
    """A manifest is validly signed, but by a key that is not in the trust list."""


class ArtifactMismatchError(IntegrityError):
    """A file the manifest names (data, tokenizer, checkpoint) has different bytes now."""


class UnsafePathError(IntegrityError):
    """A path a signed manifest records leaves its folder or is not a regular file."""


class InconsistentManifestError(IntegrityError):
    """A validly signed manifest contradicts itself (e.g. steps not numbered 1..N): not a valid record."""


class DataChangedError(ArtifactMismatchError):
    """Data files here differ from the recorded ones, so a rerun would train on other data.

    An integrity failure like any other changed artifact (exit 3) in verify, audit and gate; an
    audit with ``--allow-data-change`` reruns anyway and attributes the difference.
    """


class DataConfigMismatchError(IntegrityError):
    """A manifest's config names other data than its verified data record (repro never writes
    such a manifest); an audit refuses it before reading any data."""


# -- could not check (exit 4) ---------------------------------------------------------------------
class CouldNotCheckError(ReproError):
    """The check could not be carried out; nothing is claimed about reproducibility."""

    exit_code = ExitCode.COULD_NOT_CHECK


class MissingArtifactError(CouldNotCheckError):
    """A file the manifest names is not there."""


class IncompleteRunError(CouldNotCheckError):
    """The manifest belongs to a run that did not finish."""


class DeviceUnavailableError(CouldNotCheckError):
    """The requested device (e.g. CUDA) is not available here."""


class TrainerNotFoundError(CouldNotCheckError):
    """The trainer plugin a run needs is not installed."""


class UnverifiedCodeError(CouldNotCheckError):
    """Refused to run code (a trainer, a module, a command) that only an unverified signer's manifest
    names: the user's consent is missing (``--allow-imports``, or a trust list naming the signer)."""


class OptionalTrainerMissing(TrainerNotFoundError):
    """A built-in trainer whose optional extra (``repro-audit[lightning]``, ``[litgpt]``) is not installed.

    Using it is an error that says what to install; ``repro trainers`` leaves it out quietly.
    """


class TrainerError(CouldNotCheckError):
    """A trainer plugin failed or broke the trainer contract; the message names the trainer."""


class TrainingProcessError(CouldNotCheckError):
    """The training child process died (killed by the OS, crashed) without a usable result."""


class ProcessEnvironmentError(CouldNotCheckError):
    """The training process was not started with the environment determinism needs (PYTHONHASHSEED)."""


class ReplicaDriftError(CouldNotCheckError):
    """A data-parallel rank's model state drifted from rank 0's: the run cannot be trusted (exit 4)."""


class PeerProtocolError(CouldNotCheckError):
    """A process in the rendezvous sent data that is not what a repro rank sends (exit 4): nothing it
    sent was interpreted beyond a length check and a strict JSON parse."""


def exit_code_for(exc: BaseException) -> ExitCode:
    """The documented exit code of an exception: its ``exit_code``, INTERNAL for a non-repro one."""
    if isinstance(exc, ReproError):
        return ExitCode(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.INTERNAL


def category(exc: ReproError) -> type[ReproError]:
    """The nearest class of this module in ``exc``'s type (a plugin's own subclass maps to its base)."""
    for cls in type(exc).__mro__:
        if cls.__module__ == __name__ and isinstance(cls, type) and issubclass(cls, ReproError):
            return cls
    return ReproError
