"""``GLIBC_TUNABLES`` (glibc's allocator settings) is recorded; manifests from before are quiet."""

from __future__ import annotations

from pathlib import Path

from audits.differences import environment_differences
from repro.records.manifest_file import load_manifest

TUNED = "glibc.malloc.mmap_max=0"


def test_manifests_recorded_before_the_allocator_variable_show_no_difference(smoke_run: Path) -> None:
    here = load_manifest(smoke_run).manifest.environment
    assert "GLIBC_TUNABLES" in here.env_vars  # recorded, set or not
    older = here.model_copy(update={"env_vars": {k: v for k, v in here.env_vars.items() if k != "GLIBC_TUNABLES"}})
    assert not [d for d in environment_differences(older, here) if d.field == "env.GLIBC_TUNABLES"]
    other = here.model_copy(update={"env_vars": {**here.env_vars, "GLIBC_TUNABLES": TUNED}})
    (found,) = [d for d in environment_differences(other, here) if d.field == "env.GLIBC_TUNABLES"]
    assert (found.recorded, found.here, found.likelihood) == (TUNED, here.env_vars["GLIBC_TUNABLES"], "low")
