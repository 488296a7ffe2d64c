"""The plugin API's data helpers: file hashing that verify agrees with, generated data, fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from repro.errors import InputError
from repro.records.hashing import sha256_concat, sha256_file
from repro.records.manifest import DataSource
from repro.trainer_api import DataSummary, batch_fingerprint
from tests.plugin_site import REGRESSION_CSV


def test_from_files_hashes_each_file_and_their_concatenation_in_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a.csv").write_bytes(b"1,2\n")
    (tmp_path / "b" / "c.csv").write_bytes(b"3,4\n")
    summary = DataSummary.from_files(tmp_path, ["b/c.csv", tmp_path / "a.csv"], train_tokens=3, val_tokens=1)
    assert summary.source == DataSource(kind="path", name=str(tmp_path.resolve()))
    assert [(f.path, f.size) for f in summary.files] == [("b/c.csv", 4), ("a.csv", 4)]
    assert summary.files[1].sha256 == sha256_file(tmp_path / "a.csv")
    assert summary.corpus_sha256 == sha256_concat([b"3,4\n", b"1,2\n"])
    assert summary.tokenizer_file is None and summary.token_stream_sha256 is None


def test_from_files_names_a_missing_file_or_one_outside_the_root(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot read data file .*nope\.csv"):
        DataSummary.from_files(tmp_path, ["nope.csv"], train_tokens=1, val_tokens=1)
    with pytest.raises(InputError, match="is not inside"):
        DataSummary.from_files(tmp_path / "sub", [tmp_path / "a.csv"], train_tokens=1, val_tokens=1)


def test_generated_data_is_identified_by_its_content() -> None:
    data = torch.arange(12.0).reshape(3, 4)
    one = DataSummary.generated("demo:make", data, train_tokens=2, val_tokens=1)
    assert one.source.kind == "generated" and one.files == []
    again = DataSummary.generated("demo:make", data.clone(), train_tokens=2, val_tokens=1)
    assert one.corpus_sha256 == again.corpus_sha256
    changed = data.clone()
    changed[2, 3] += 1e-6
    assert DataSummary.generated("demo:make", changed, train_tokens=2, val_tokens=1).corpus_sha256 != one.corpus_sha256


def test_summary_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        DataSummary(DataSource(kind="generated", name="x"), [], "0" * 64, 1, 1)  # type: ignore[call-arg]


def test_batch_fingerprint_sees_values_dtype_shape_and_structure() -> None:
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    y = torch.tensor([0, 1])
    base = batch_fingerprint((x, y))
    assert len(base) == 16 and base == batch_fingerprint((x.clone(), y.clone()))
    assert base != batch_fingerprint((x.reshape(3, 2), y))
    assert base != batch_fingerprint((x.double(), y))
    assert base != batch_fingerprint([x, y])
    assert base != batch_fingerprint((x, y + 1))
    assert batch_fingerprint({"b": 1, "a": 2.0}) == batch_fingerprint({"a": 2.0, "b": 1})
    assert len({batch_fingerprint(1), batch_fingerprint(1.0), batch_fingerprint(True)}) == 3
    with pytest.raises(TypeError, match="cannot fingerprint a value of type 'object'"):
        batch_fingerprint(object())


def test_the_committed_regression_data_is_what_the_tests_expect() -> None:
    lines = REGRESSION_CSV.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "x1,x2,x3,x4,y" and len(lines) == 49
