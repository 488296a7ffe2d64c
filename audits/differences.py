"""Recorded vs here: every difference in environment, code, data and trainer, ranked by how likely
it is to change the numbers.

"Here" for the environment is what the rerun's training process captured about itself (the same
capture the recording used), so the comparison is like for like. Ranking: likelihood first
(``certain`` > ``high`` > ``medium`` > ``low``), then the order of :data:`CATEGORY_ORDER`, which
follows how often each kind of difference changes floating-point results in practice: device,
torch build, CUDA libraries, BLAS, CPU instruction set, thread count, determinism flags,
``PYTHONHASHSEED``, code, data, trainer, other packages, platform, tool.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from repro.audits.report import DataCheck, Difference, Likelihood
from repro.capture.environment import NUMERIC_ENV_VARS
from repro.records.hashing import sha256_file
from repro.records.manifest import (
    CodeRecord,
    DataRecord,
    DistributedRecord,
    EnvironmentRecord,
    ExecutedCode,
    RunIdentity,
    RunManifest,
    RunSettings,
)
from repro.running.job import DataResult

CATEGORY_ORDER = (
    "device", "torch", "cuda", "blas", "cpu", "world", "threads", "determinism", "hashseed",
    "code", "data", "trainer", "packages", "platform", "tool",
)
_LIKELIHOOD_ORDER: dict[str, int] = {"certain": 0, "high": 1, "medium": 2, "low": 3, "none": 4}

NUMERIC_PACKAGES = frozenset({
    "numpy", "scipy", "sentencepiece", "tokenizers", "safetensors", "triton", "mkl", "intel-openmp",
    "onednn", "openblas", "pytorch-lightning", "lightning", "transformers", "accelerate",
})
"""Packages besides torch that sit on the numeric path of typical trainers (medium, not low)."""

# Environment variables by what they influence: the capture's own table (one list for both).
_ENV_VAR_CATEGORY: dict[str, tuple[str, Likelihood]] = dict(NUMERIC_ENV_VARS)


LATER_FLAGS = frozenset({
    "cuda_matmul_allow_bf16_reduced_precision_reduction", "inductor_deterministic",
    "inductor_fallback_random", "inductor_fx_graph_cache", "inductor_fresh_cache",
})
"""Determinism flags captured since the second release; a manifest without them predates them."""

LATER_ENV_VARS = frozenset({"GLIBC_TUNABLES"})
"""Environment variables recorded since a later release; a manifest without them predates them."""

SETTINGS: dict[str, tuple[str, Likelihood]] = {
    "seed": ("trainer", "certain"), "device": ("device", "high"), "precision": ("determinism", "certain"),
    "compile": ("determinism", "high"), "pythonhashseed": ("hashseed", "medium"),
    "checkpoint_every": ("trainer", "low"), "eval_every": ("trainer", "low"),
}
"""Run settings compared between two runs, with the category and likelihood of a change: the one
table for audit, diff and vary. The world size is :func:`distributed_differences`'; threads are
compared through the environment records (what the process really ran with)."""

def rank(differences: Iterable[Difference]) -> list[Difference]:
    """Sort differences: most likely to change numerics first, then by category order."""
    def key(d: Difference) -> tuple[int, int, str]:
        category = CATEGORY_ORDER.index(d.category) if d.category in CATEGORY_ORDER else len(CATEGORY_ORDER)
        return _LIKELIHOOD_ORDER[d.likelihood], category, d.field
    return sorted(differences, key=key)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _diff(category: str, field: str, recorded: object, here: object, likelihood: Likelihood,
          *, note: str | None = None) -> Difference:
    return Difference(category=category, field=field, recorded=_text(recorded), here=_text(here),
                      likelihood=likelihood, note=note)


def _flag_summary(recorded: list[str], here: list[str], limit: int = 8) -> tuple[str, str]:
    def cut(items: list[str]) -> str:
        return " ".join(items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
    lost, gained = sorted(set(recorded) - set(here)), sorted(set(here) - set(recorded))
    return (f"{len(recorded)} flags" + (f"; only recorded: {cut(lost)}" if lost else ""),
            f"{len(here)} flags" + (f"; only here: {cut(gained)}" if gained else ""))


def environment_differences(recorded: EnvironmentRecord, here: EnvironmentRecord) -> list[Difference]:
    """Every field of the environment record that differs, categorised."""
    out: list[Difference] = []
    scalar: list[tuple[str, str, Likelihood]] = [
        ("devices", "device", "high"),
        ("torch_version", "torch", "high"),
        ("torch_build", "blas", "high"),
        ("cuda_version", "cuda", "high"),
        ("cudnn_version", "cuda", "high"),
        ("machine", "cpu", "high"),
        ("cpu_capability", "cpu", "high"),
        ("cpu_model", "cpu", "medium"),
        ("torch_threads", "threads", "high"),
        ("torch_interop_threads", "threads", "low"),
        ("python", "platform", "low"),
        ("python_implementation", "platform", "medium"),
        ("os", "platform", "low"),
        ("kernel", "platform", "low"),
        ("cpu_count", "platform", "low"),
    ]
    for name, category, likelihood in scalar:
        a, b = getattr(recorded, name), getattr(here, name)
        if a != b:
            if name == "torch_build":
                out.append(_diff(category, "environment.torch_build", "(recorded build config)",
                                 "(different build config)", likelihood,
                                 note="torch.__config__.show() differs: compiler, BLAS or oneDNN"))
            else:
                out.append(_diff(category, f"environment.{name}", ", ".join(a) if isinstance(a, list) else a,
                                 ", ".join(b) if isinstance(b, list) else b, likelihood))
    if recorded.cpu_flags != here.cpu_flags:
        before, after = _flag_summary(recorded.cpu_flags, here.cpu_flags)
        out.append(_diff("cpu", "environment.cpu_flags", before, after, "medium",
                         note="instruction-set extensions differ; torch may pick other kernels"))
    for flag in sorted(set(recorded.determinism) | set(here.determinism)):
        a, b = recorded.determinism.get(flag), here.determinism.get(flag)
        if flag not in recorded.determinism and flag in LATER_FLAGS:
            continue  # recorded before repro captured this flag: no evidence either way
        if a != b:
            category = "hashseed" if flag == "hash_randomization" else "determinism"
            out.append(_diff(category, f"determinism.{flag}", a, b, "medium" if category == "hashseed" else "high"))
    threads_changed = recorded.torch_threads != here.torch_threads
    for var in sorted(set(recorded.env_vars) | set(here.env_vars)):
        a, b = recorded.env_vars.get(var), here.env_vars.get(var)
        if a == b or (var not in recorded.env_vars and var in LATER_ENV_VARS):
            continue
        category, likelihood = _ENV_VAR_CATEGORY.get(var, ("platform", "low"))
        if (category == "threads" and threads_changed
                and (a, b) == (str(recorded.torch_threads), str(here.torch_threads))):
            continue  # the same change as torch_threads, already listed
        if category == "determinism" and not here.devices and not recorded.devices:
            likelihood = "low"  # CUDA settings cannot matter on a CPU-only run
        out.append(_diff(category, f"env.{var}", a, b, likelihood))
    out.extend(package_differences(recorded.distributions, here.distributions))
    return out


def package_differences(recorded: dict[str, str], here: dict[str, str]) -> list[Difference]:
    """Installed distributions added, removed or at another version (torch and repro itself excluded)."""
    out = []
    for name in sorted(set(recorded) | set(here)):
        a, b = recorded.get(name), here.get(name)
        if a == b or name in ("torch", "repro", "repro-audit"):  # repro-audit: repro's name since 0.3
            continue
        likelihood: Likelihood
        if name.startswith("nvidia-"):
            category, likelihood = "cuda", "medium"
        elif name in NUMERIC_PACKAGES:
            category, likelihood = "packages", "medium"
        else:
            category, likelihood = "packages", "low"
        out.append(_diff(category, f"package {name}", a or "(absent)", b or "(absent)", likelihood))
    return out


def settings_changed(recorded: RunSettings, here: RunSettings) -> list[str]:
    """The names of the settings (and world size) in which ``here`` differs from ``recorded``, in words
    a report can print after "changed": device, threads, processes, precision, compile, ..."""
    names = [name for name in SETTINGS if getattr(recorded, name) != getattr(here, name)]
    if recorded.threads != here.threads:
        names.append("threads")
    if recorded.world_size != here.world_size:
        names.append("processes")
    return names


def run_differences(recorded: RunIdentity, here: RunIdentity, *, rerun: bool) -> list[Difference]:
    """Settings (:data:`SETTINGS`), trainer, config and tool version of two runs.

    ``rerun``: ``here`` is a rerun of ``recorded`` (an audit), whose settings differ only where the
    auditor asked and whose config is the recorded one as the installed trainer reads it; otherwise
    two recorded runs (a diff), whose config differences are differences of what they ran.
    """
    out = []
    for name, (category, likelihood) in SETTINGS.items():
        a, b = getattr(recorded.settings, name), getattr(here.settings, name)
        if a != b:
            out.append(_diff(category, f"settings.{name}", a, b, likelihood,
                             note="the rerun was asked for another value" if rerun else None))
    if recorded.trainer.entry != here.trainer.entry:
        out.append(_diff("trainer", "trainer.entry", recorded.trainer.entry, here.trainer.entry, "high"))
    if recorded.trainer.version != here.trainer.version:
        out.append(_diff("trainer", "trainer.version", recorded.trainer.version, here.trainer.version, "medium"))
    for key in sorted(set(recorded.config) | set(here.config)):
        a, b = recorded.config.get(key, "(absent)"), here.config.get(key, "(absent)")
        if a != b:
            if rerun:
                out.append(_diff("trainer", f"config.{key}", a, b, "high",
                                 note="the installed trainer reads the recorded config differently"))
            else:
                out.append(_diff("trainer", f"config.{key}", a, b, "certain" if key != "steps" else "high"))
    if recorded.tool_version != here.tool_version:
        out.append(_diff("tool", "repro version", recorded.tool_version, here.tool_version, "low"))
    return out


def distributed_differences(
    recorded: RunManifest, world_size: int, here: DistributedRecord | None
) -> list[Difference]:
    """World size, backend, NCCL and collective settings, recorded vs the rerun's; nodes that
    differed from node 0 in the recorded run."""
    rec = recorded.distributed
    out: list[Difference] = []
    if recorded.run.settings.world_size != world_size:
        out.append(_diff("world", "settings.world_size", recorded.run.settings.world_size, world_size, "high",
                         note="data-parallel reduction order depends on the number of processes"))
    pairs: list[tuple[str, object, object]] = [
        ("distributed.backend", rec.backend if rec else None, here.backend if here else None),
        ("distributed.nccl_version", rec.nccl_version if rec else None, here.nccl_version if here else None),
    ]
    if rec is not None and here is not None:
        for var in sorted(set(rec.env_vars) | set(here.env_vars)):
            pairs.append((f"distributed.env.{var}", rec.env_vars.get(var), here.env_vars.get(var)))
    for field, a, b in pairs:
        if a != b and a is not None and b is not None:
            out.append(_diff("world", field, a, b, "high"))
    for node in rec.nodes if rec else []:
        for note in node.differences:
            out.append(_diff("platform", f"node {node.node_rank}", "as node 0", note, "medium",
                             note="the recorded run's nodes differed from each other"))
    return out


def _executed_paths(executed: Iterable[ExecutedCode | None]) -> list[str] | None:
    """Module files in no distribution that either process executed; None if either did not record them."""
    records = list(executed)
    if not records or any(r is None for r in records):
        return None
    return sorted({f.path for r in records if r is not None for f in r.files})


def _was_executed(name: str, executed: list[str]) -> bool:
    """Whether an untracked file (repository-relative) is one of the executed module files (import-root
    relative): the same path, or the path under a source folder such as ``src/``."""
    return any(name == p or name.endswith("/" + p) for p in executed)


def code_differences(recorded: CodeRecord, here: CodeRecord,
                     executed: Iterable[ExecutedCode | None] = ()) -> list[Difference]:
    """Git commit, uncommitted diff and untracked files, recorded vs the working folder now.

    Ignored files are never recorded (git leaves them out of the untracked list). Given the
    processes' ``executed`` code records, untracked files that neither training process executed
    (a report folder, notes, data) are listed with likelihood ``none``: never a likely cause.
    """
    if not recorded.available and not here.available:
        return []
    if not recorded.available or not here.available:
        return [_diff("code", "code.available", recorded.reason or "known", here.reason or "known", "medium",
                      note="the code state is unknown on one side, so a code change cannot be ruled out")]
    out = []
    if recorded.commit != here.commit:
        out.append(_diff("code", "code.commit", recorded.commit, here.commit, "high"))
    if recorded.diff_sha256 != here.diff_sha256:
        out.append(_diff("code", "code.diff_sha256", recorded.diff_sha256 or "(clean)", here.diff_sha256 or "(clean)",
                         "high", note="uncommitted changes differ"))
    if recorded.untracked != here.untracked:
        gone = sorted(set(recorded.untracked) - set(here.untracked))
        new = sorted(set(here.untracked) - set(recorded.untracked))
        ran = _executed_paths(executed)
        if ran is not None:
            idle = {f for f in gone + new if not _was_executed(f, ran)}
            gone_idle, new_idle = [f for f in gone if f in idle], [f for f in new if f in idle]
            gone, new = [f for f in gone if f not in idle], [f for f in new if f not in idle]
            if idle:
                out.append(_diff("code", "code.untracked_not_executed", _listed(gone_idle), _listed(new_idle), "none",
                                 note=UNTRACKED_IDLE_NOTE))
        if gone or new:
            out.append(_diff("code", "code.untracked", _listed(gone), _listed(new), "medium",
                             note="untracked files differ (their contents are not recorded)"))
    return out


UNTRACKED_IDLE_NOTE = "untracked files the training process did not execute: listed, not a likely cause"


def _listed(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit})" if len(names) > limit else "") or "-"


def data_differences(checks: list[DataCheck], recorded: DataRecord,
                     here: DataRecord | DataResult | None) -> list[Difference]:
    """Data files changed before the comparison (``checks``), then the data the other side read:
    a second run's record, or what a rerun's trainer reported (its tokenizer hashed here)."""
    out = [_diff("data", f"data file {c.path}", "recorded sha256", c.status, "certain")
           for c in checks if c.status != "ok" and c.kind == "data"]
    if here is None:
        return out
    rec_files = {f.path: f.sha256 for f in recorded.files}
    new_files = {f.path: f.sha256 for f in here.files}
    for path in sorted(set(rec_files) | set(new_files)):
        if path not in rec_files or path not in new_files:
            out.append(_diff("data", f"data file {path}", "present" if path in rec_files else "(absent)",
                             "present" if path in new_files else "(absent)", "certain",
                             note="the trainer read a different set of files"))
        elif rec_files[path] != new_files[path] and isinstance(here, DataRecord):
            out.append(_diff("data", f"data file {path}", rec_files[path][:12], new_files[path][:12], "certain"))
    pairs: list[tuple[str, object, object]] = [
        ("data.source", recorded.source.model_dump(), here.source.model_dump()),
        ("data.corpus_sha256", recorded.corpus_sha256, here.corpus_sha256),
        ("data.token_stream_sha256", recorded.token_stream_sha256, here.token_stream_sha256),
        ("data.train_tokens", recorded.train_tokens, here.train_tokens),
        ("data.val_tokens", recorded.val_tokens, here.val_tokens),
    ]
    if isinstance(here, DataRecord):
        pairs.append(("data.tokenizer", recorded.tokenizer.sha256 if recorded.tokenizer else None,
                      here.tokenizer.sha256 if here.tokenizer else None))
    elif recorded.tokenizer is not None and here.tokenizer_path:
        tokenizer = Path(here.tokenizer_path)
        here_sha = sha256_file(tokenizer) if tokenizer.is_file() else None
        pairs.append(("data.tokenizer", recorded.tokenizer.sha256, here_sha))
    same_files = rec_files == new_files and recorded.corpus_sha256 == here.corpus_sha256
    for field, a, b in pairs:
        if a != b:
            # The same files from another place (a path source on two machines) is not a difference.
            out.append(_diff("data", field, a, b, "low" if field == "data.source" and same_files else "certain"))
    return out
