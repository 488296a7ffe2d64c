"""A test hook that kills ``repro run`` at a chosen point, to prove that crashes lose nothing.

Set ``REPRO_TEST_CRASH_AT`` to one of

- ``step:N`` — right after optimizer step N (and its validation), before its checkpoint;
- ``checkpoint:N`` — while step N's checkpoint is half written (its state file is in the
  ``.partial`` folder, its records are not, the folder is not renamed);
- ``manifest`` — while the manifest is half written (half its bytes are in the temporary file);
- ``swap`` — when the finished run's folder has been renamed into place but its manifest has not
  (see :mod:`repro.running.layout`);

and the process that reaches that point sends SIGKILL to its whole process group: the training
child and the ``repro run`` parent die at once, with no chance to clean up, as in a power cut or
an OOM kill. The variable reaches the child because the launcher passes the environment on.

Only for tests that start ``repro run`` in a process group of its own
(``subprocess.Popen(..., start_new_session=True)``): anything else in the group dies too. Unset,
the hook costs one dictionary lookup per call.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV_VAR = "REPRO_TEST_CRASH_AT"


def crash_point(point: str, step: int | None = None) -> None:
    """SIGKILL this process group if ``REPRO_TEST_CRASH_AT`` names ``point`` (at ``step``)."""
    wanted = os.environ.get(CRASH_ENV_VAR)
    if wanted and wanted == (point if step is None else f"{point}:{step}"):
        os.killpg(os.getpgrp(), signal.SIGKILL)
