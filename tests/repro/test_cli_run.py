"""`repro run` with bad input: one line, the documented exit code, no traceback, no manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.cli import main


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "no-such-preset"], 2,
         "unknown preset 'no-such-preset' (known presets: baseline, baseline-full, litgpt-baseline"),
        (["run", "smoke", "--set", "n_layer=abc"], 2, "invalid gpt config value for 'n_layer'"),
        (["run", "smoke", "--set", "bogus=1"], 2, "--set bogus: unknown key"),
        (["run", "smoke", "--set", "novalue"], 2, "must look like key=value"),
        (["run", "smoke", "--steps", "0"], 2, "invalid gpt config value for 'steps'"),
        (["run", "smoke", "--threads", "0"], 2, "invalid setting value for 'threads'"),
        (["run", "smoke", "--device", "tpu"], 2, "invalid choice: 'tpu'"),
        (["run", "smoke", "--trainer", "nope"], 4, "no trainer named 'nope' is installed (installed: gpt"),
        (["run", "smoke", "--trainer", "no_such_module:Thing"], 4, "cannot import trainer module"),
    ],
)
def test_bad_arguments(args: list[str], code: int, message: str, capsys, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    got, text = _run([*args, "--out", str(out)], capsys)
    assert got == code, text
    assert message in " ".join(text.split()), text
    assert "Traceback" not in text
    assert not out.exists()


def test_missing_trainer_is_could_not_check(capsys, tmp_path: Path) -> None:
    code, _ = _run(["run", "smoke", "--trainer", "nope", "--out", str(tmp_path / "r.json")], capsys)
    assert code == 4


@pytest.mark.parametrize(
    ("make_data", "message"),
    [
        (lambda p: p / "nothing-here", "no such file or folder"),
        (lambda p: (p / "empty.txt").write_text("   \n") and p / "empty.txt", "is empty"),
        (lambda p: (p / "folder").mkdir() or p / "folder", "holds no .txt or .md files"),
        (lambda p: (p / "small.txt").write_text("a tiny corpus\n" * 50) and p / "small.txt",
         "too small for a 1000-piece vocabulary"),
    ],
)
def test_bad_corpus(make_data, message: str, capsys, tmp_path: Path) -> None:
    data = make_data(tmp_path)
    out = tmp_path / "out" / "run.json"
    code, text = _run(["run", "smoke", "--data", str(data), "--out", str(out)], capsys)
    assert code == 2, text
    assert message in " ".join(text.split()), text
    assert "Traceback" not in text
    assert not out.exists()


def test_unwritable_output_folder(capsys, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, text = _run(["run", "smoke", "--out", str(blocker / "run.json")], capsys)
    assert code == 2
    assert "cannot write" in text and "Traceback" not in text


def test_out_must_be_json(capsys, tmp_path: Path) -> None:
    code, text = _run(["run", "smoke", "--out", str(tmp_path / "run.txt")], capsys)
    assert code == 2 and "must name a .json file" in text


def test_trainers_lists_the_builtin_gpt(capsys) -> None:
    code, text = _run(["trainers"], capsys)
    assert code == 0
    assert "gpt" in text and "repro.trainer.gpt.trainer:GPTTrainer" in text and "smoke" in text
