"""The training process's allocator keeps big tensors' pages for reuse (repro.determinism.MALLOC_TUNABLES):
measured in a real child process by the page faults a second 128 MiB tensor costs."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from audits.differences import environment_differences
from repro.determinism import MALLOC_TUNABLES, controlled_environment
from repro.manifest import RunSettings
from repro.manifest_file import load_manifest

FAULTS_OF_A_SECOND_TENSOR = """
import json, resource, torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(2):
    before = faults()
    t = torch.ones(32 * 1024 * 1024)  # 128 MiB, written once
    del t
print(json.dumps(faults() - before))
"""


def _faults_of_second_allocation(env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS_OF_A_SECOND_TENSOR], env=env, check=True,
                         capture_output=True, text=True, timeout=120)
    return int(json.loads(out.stdout))


def test_the_controlled_environment_sets_the_allocator_and_keeps_a_users_own() -> None:
    assert controlled_environment(RunSettings(), base={})["GLIBC_TUNABLES"] == MALLOC_TUNABLES
    mine = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=1"}
    assert controlled_environment(RunSettings(), base=mine)["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=1"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="GLIBC_TUNABLES is glibc's")
def test_a_big_tensor_made_again_reuses_its_pages_in_a_training_process() -> None:
    """glibc ignores a tunable it does not know, silently: only a measurement shows the name works."""
    plain = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    controlled = controlled_environment(RunSettings(), base=plain)
    pages = 128 * 1024 * 1024 // 4096
    # Guards against passing vacuously: without the setting every page faults again (mmap, munmap).
    assert _faults_of_second_allocation(plain) > pages // 2
    assert _faults_of_second_allocation(controlled) < pages // 20


def test_manifests_recorded_before_the_allocator_setting_show_no_difference(smoke_run: Path) -> None:
    here = load_manifest(smoke_run).manifest.environment
    older = here.model_copy(update={"env_vars": {k: v for k, v in here.env_vars.items() if k != "GLIBC_TUNABLES"}})
    assert not [d for d in environment_differences(older, here) if d.field == "env.GLIBC_TUNABLES"]
    other = here.model_copy(update={"env_vars": {**here.env_vars, "GLIBC_TUNABLES": None}})
    (found,) = [d for d in environment_differences(other, here) if d.field == "env.GLIBC_TUNABLES"]
    assert (found.recorded, found.here, found.likelihood) == (None, MALLOC_TUNABLES, "low")
