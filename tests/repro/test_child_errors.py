"""Errors from the training child keep their category, real processes.

The child sends back the nearest :mod:`repro.errors` class of its error and the error's own exit
code, so a plugin's own subclass keeps its code across the process boundary; a child killed by the
OS, a crash, or a wrong ``PYTHONHASHSEED`` is "could not check" (4), never "usage error" (2).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from repro import errors
from repro.errors import ExitCode
from repro.running.job import WorkerFailure
from repro.running.launcher import _error_from
from repro.running.worker import _failure
from tests.plugin_site import make_importable

PLUGIN = '''
import os
import signal

from repro.errors import ExitCode, InputError, ReproError
from tinymlp import TinyMLPTrainer


class PluginInputError(InputError):
    pass


class PluginOwnCodeError(ReproError):
    exit_code = ExitCode.INTEGRITY


class OwnInputError(TinyMLPTrainer):
    def train_step(self, step):
        raise PluginInputError("plugin: the shard index is malformed")


class OwnCode(TinyMLPTrainer):
    def train_step(self, step):
        raise PluginOwnCodeError("plugin: the shard's checksum differs")


class KilledByTheOS(TinyMLPTrainer):
    def train_step(self, step):
        os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.parametrize(("trainer", "code", "message"), [
    ("OwnInputError", ExitCode.USAGE, "plugin: the shard index is malformed"),
    ("OwnCode", ExitCode.INTEGRITY, "plugin: the shard's checksum differs"),
    ("KilledByTheOS", ExitCode.COULD_NOT_CHECK, "the training process was killed by signal 9 without a result"),
])
def test_a_child_error_keeps_its_exit_code(
    trainer: str, code: ExitCode, message: str, plugin_path: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from repro.cli import main

    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "childerrors.py").write_text(PLUGIN)
    make_importable(monkeypatch, tmp_path / "plugin")
    out = tmp_path / "out" / "run.json"
    assert main(["run", "mlp-tiny", "--trainer", f"childerrors:{trainer}", "--out", str(out)]) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_category_survives_the_wire_format() -> None:
    class PluginDataError(errors.InputError):
        pass

    class PluginOwnCode(errors.ReproError):
        exit_code = ExitCode.COULD_NOT_CHECK

    for exc, cls, code in ((PluginDataError("x"), errors.InputError, 2), (PluginOwnCode("y"), errors.ReproError, 4),
                           (errors.DataChangedError("z"), errors.DataChangedError, 3)):
        failure = WorkerFailure.model_validate_json(_failure(exc).model_dump_json())
        back = _error_from(failure, Path("train.log"))
        assert type(back) is cls and back.exit_code == code == errors.exit_code_for(exc)
    # An older child (no exit code) or a name repro does not know: a crash, could not check.
    unknown = _error_from(WorkerFailure(error_type="NoSuchError", message="m"), Path("train.log"))
    assert isinstance(unknown, errors.TrainingProcessError) and unknown.exit_code == 4


def test_conditions_that_were_bare_repro_errors_are_could_not_check() -> None:
    for cls in (errors.TrainingProcessError, errors.ProcessEnvironmentError):
        assert errors.exit_code_for(cls("m")) == ExitCode.COULD_NOT_CHECK
    root = Path(errors.__file__).parent
    for path in [*root.glob("*.py"), *root.glob("audits/*.py"), *root.glob("trainer/**/*.py")]:
        assert "raise ReproError(" not in path.read_text(), f"{path}: raise a subclass that says the category"
        assert "raise errors.ReproError(" not in path.read_text(), f"{path}: raise a subclass"
