"""The GPT trainer's corpus and tokenizer: deterministic bytes, clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.errors import InputError
from repro.trainer.gpt import data


def test_builtin_corpus_is_the_38_plays_in_sorted_order() -> None:
    corpus = data.load_corpus(None)
    assert len(corpus.files) == 38
    assert [p for p, _ in corpus.files] == sorted(p for p, _ in corpus.files)
    assert sum(len(b) for _, b in corpus.files) == 5_318_858
    assert corpus.source.kind == "distribution" and corpus.source.version == "3.0.0"


def test_tokenizer_bytes_depend_only_on_text_and_options(tmp_path: Path) -> None:
    text = data.load_corpus(None, max_files=1).text()
    first = data.train_tokenizer(text, 500, tmp_path / "a")
    second = data.train_tokenizer(text, 500, tmp_path / "b")  # a fresh cache: trained again
    assert first == second
    assert data.train_tokenizer(text, 600, tmp_path / "a") != first


def test_folder_corpus_takes_txt_and_md_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("second\n")
    (tmp_path / "a.md").write_text("first\n")
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    corpus = data.load_corpus(str(tmp_path))
    assert [p for p, _ in corpus.files] == ["a.md", "b.txt"]
    assert corpus.text() == "first\nsecond\n"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p / "missing.txt", "no such file"),
        (lambda p: ((p / "empty.txt").write_text("") and p / "empty.txt") or p / "empty.txt", "empty"),
        (lambda p: (p / "bin.txt").write_bytes(b"\xff\xfe\x00") and p / "bin.txt", "not UTF-8"),
    ],
)
def test_bad_corpora_raise_input_errors(tmp_path: Path, setup, message: str) -> None:
    path = setup(tmp_path)
    with pytest.raises(InputError, match=message):
        data.load_corpus(str(path)).text()


def test_corpus_too_small_for_vocabulary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="too small for a 16000-piece vocabulary"):
        data.train_tokenizer("to be or not to be\n" * 20, 16000, tmp_path)
