"""The text of the CI files ``repro init`` writes: the gate policy, the GitHub workflow, the GitLab job.

Every file installs repro with CPU torch pinned by a constraint (so no dependency can swap it for a
CUDA build), installs the project itself when it is a Python package, runs the same gate command,
and publishes JUnit, the HTML page and the markdown summary (docs/ci.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

GATE_COMMAND: Final = (
    "repro gate --junit reports/gate.xml --json reports/gate.json --summary reports/gate.md "
    "--plots reports/plots --html reports/gate.html"
)
"""The one gate command every generated CI file runs (from the repository root)."""

GITIGNORE_LINES: Final = (
    "# repro: run outputs and the gate's reports (the reference run under manifests/reference/ is committed)",
    "/manifests/run.json",
    "/manifests/run/",
    "/manifests/*.incomplete",
    "/manifests/*.incomplete/",
    "/manifests/*.replaced/",
    "/manifests/.*.lock",
    "/reports/",
)

CPU_INDEX: Final = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class Project:
    """What the CI files need to know about the project being set up."""

    manifest: str
    """The reference manifest, POSIX path relative to the repository root."""
    trusted_keys: str
    """The trust list, relative to the repository root."""
    torch_version: str
    """The torch release the reference records (without a local build tag)."""
    python_version: str
    """``major.minor`` of the Python the reference was made with."""
    requirement: str
    """How to install repro, e.g. ``repro-audit[lightning]==0.3.0``."""
    installable: bool
    """The repository is itself a Python project (``pip install -e .`` installs its plugin)."""
    on_path: bool
    """The trainer is a ``module:Class`` at the repository root: put the root on ``PYTHONPATH``."""


def policy_comment() -> str:
    """The comment above the ``[tool.repro.gate]`` table."""
    return "The reproducibility release gate (`repro gate`, docs/ci.md); written by `repro init`."


def policy(project: Project) -> dict[str, object]:
    """The ``[tool.repro.gate]`` table: the reference must reproduce, signed by a listed key."""
    return {
        "manifests": [project.manifest],
        "trusted_keys": project.trusted_keys,
        "mode": "full",
        "device": "cpu",
    }


def _install_lines(project: Project, constraint: str) -> list[str]:
    lines = [
        f'python -m pip install --index-url {CPU_INDEX} "torch=={project.torch_version}"',
        f"python -c \"import torch; print('torch==' + torch.__version__.split('+')[0])\" > {constraint}",
        f'python -m pip install -c {constraint} "{project.requirement}"',
    ]
    if project.installable:
        lines.append(f"python -m pip install -c {constraint} -e .")
    return lines


def github_workflow(project: Project) -> str:
    """``.github/workflows/repro-gate.yml``."""
    install = "\n".join(f"          {line}" for line in _install_lines(project, '"$RUNNER_TEMP/torch-constraint.txt"'))
    path_env = ("    env:\n      PYTHONPATH: ${{ github.workspace }}   # the trainer is a module at the "
                "repository root\n") if project.on_path else ""
    return f"""\
# The reproducibility release gate (docs/ci.md), written by `repro init`: the reference run named
# in [tool.repro.gate] of pyproject.toml must verify against the trust list and reproduce.
# Exit codes: 0 pass, 1 not reproduced / forbidden vulnerability, 2 bad policy, 3 integrity,
# 4 could not check. Reports (JUnit, JSON, markdown, HTML, plots) are uploaded even on failure.
name: repro gate

on:
  pull_request:
  push:
    branches: [main]
    tags: ["v*"]

permissions:
  contents: read

jobs:
  gate:
    runs-on: ubuntu-latest
    timeout-minutes: 60
{path_env}    steps:
      # The reference run (manifest and run folder) is committed; its checkpoints may live in Git
      # LFS. To restore the run folder from a cache or store instead, add that step here (docs/ci.md).
      - uses: actions/checkout@v4
        with:
          lfs: true   # harmless without LFS

      - uses: actions/setup-python@v5
        with:
          python-version: "{project.python_version}"

      # The torch the reference recorded, CPU build, pinned by a constraint: no extra can swap it for CUDA.
      - name: Install repro with CPU torch
        run: |
{install}

      # --summary also appends the markdown table to $GITHUB_STEP_SUMMARY (the run's summary page).
      - name: Reproducibility gate
        run: {GATE_COMMAND}

      - name: Upload gate reports (open gate.html first)
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: repro-gate-reports
          path: reports/
          if-no-files-found: warn
"""


def gitlab_job(project: Project) -> str:
    """A GitLab CI job (a whole ``.gitlab-ci.yml``, or a file to ``include:``)."""
    install = "\n".join(f"    - {line}" for line in _install_lines(project, "torch-constraint.txt"))
    path_env = '    PYTHONPATH: "$CI_PROJECT_DIR"   # the trainer is a module at the repository root\n' \
        if project.on_path else ""
    return f"""\
# The reproducibility release gate (docs/ci.md), written by `repro init`.
repro-gate:
  image: python:{project.python_version}
  variables:
    GIT_LFS_SKIP_SMUDGE: "0"   # fetch reference checkpoints kept in Git LFS
{path_env}  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
    - if: $CI_COMMIT_TAG
  script:
{install}
    - {GATE_COMMAND}
  artifacts:
    when: always
    paths: [reports/]
    reports:
      junit: reports/gate.xml
"""
