"""Batches from a LightningDataModule's loaders, in an order repro controls and can resume.

The adapter does not iterate the user's ``DataLoader``: a loader with ``shuffle=True`` draws its
order from the global RNG (so validation could shift training randomness) and its workers are
processes whose state a checkpoint cannot hold. It reads the loader's dataset, batch size,
``drop_last`` and ``collate_fn`` instead and fetches batches itself, in this process, exactly as a
single-process ``DataLoader`` would (``collate_fn([dataset[i] for i in batch_indices])``). A
shuffled loader's order is ``torch.randperm`` of a generator seeded from the run seed; the order
of the current epoch and the position in it are part of the checkpoint, so a resumed run continues
on the very next batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, IterableDataset, RandomSampler, SequentialSampler

from repro.records.hashing import sha256_structure


class UnsupportedLoaderError(ValueError):
    """A loader the adapter cannot replay deterministically (the message says which part)."""


@dataclass(frozen=True)
class BatchSource:
    """What the adapter needs from one ``DataLoader``."""

    dataset: Any
    batch_size: int
    shuffle: bool
    drop_last: bool
    collate_fn: Any
    ignored: tuple[str, ...]
    """Loader settings the adapter does not apply (e.g. ``num_workers=4``), for the record."""

    @classmethod
    def from_loader(cls, loader: Any, what: str) -> BatchSource:
        """Read a ``DataLoader``'s settings; reject what cannot be replayed step by step."""
        if not isinstance(loader, DataLoader):
            raise UnsupportedLoaderError(f"{what} returned {type(loader).__name__}; it must return one DataLoader")
        if isinstance(loader.dataset, IterableDataset):
            raise UnsupportedLoaderError(f"{what}: iterable datasets are not supported; use a map-style dataset")
        if loader.batch_size is None or type(loader.batch_sampler) is not BatchSampler:
            raise UnsupportedLoaderError(f"{what}: a custom batch_sampler is not supported; pass batch_size")
        sampler = loader.sampler
        if type(sampler) is RandomSampler:
            if sampler.replacement or sampler._num_samples is not None:
                raise UnsupportedLoaderError(f"{what}: RandomSampler with replacement or num_samples is not supported")
            shuffle = True
        elif type(sampler) is SequentialSampler:
            shuffle = False
        else:
            raise UnsupportedLoaderError(
                f"{what}: sampler {type(sampler).__name__} is not supported; use shuffle=True or False"
            )
        ignored = tuple(
            f"{name}={getattr(loader, name)!r}" for name, default in (("num_workers", 0), ("pin_memory", False))
            if getattr(loader, name) != default
        )
        return cls(loader.dataset, int(loader.batch_size), shuffle, bool(loader.drop_last), loader.collate_fn, ignored)

    def __len__(self) -> int:
        """Examples in the dataset."""
        return len(self.dataset)

    @property
    def batches_per_epoch(self) -> int:
        """Batches in one pass, as the ``DataLoader`` would count them."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor:
        """The example order of a new epoch: a permutation from ``generator``, or 0..n-1."""
        n = len(self.dataset)
        if self.shuffle:
            return torch.randperm(n, generator=generator)
        return torch.arange(n)

    def batch(self, order: torch.Tensor, index: int) -> tuple[Any, int]:
        """Batch ``index`` of an epoch in ``order``, collated; and how many examples it holds."""
        indices = order[index * self.batch_size : (index + 1) * self.batch_size].tolist()
        getitems = getattr(self.dataset, "__getitems__", None)  # as torch's map-style fetcher does
        items = getitems(indices) if callable(getitems) else [self.dataset[i] for i in indices]
        return self.collate_fn(items), len(indices)

    def sequential_batches(self, limit: int | None = None) -> Iterator[tuple[int, Any, int]]:
        """Every batch in dataset order (validation): ``(batch_idx, batch, size)``."""
        order = torch.arange(len(self.dataset))
        count = math.ceil(len(self.dataset) / self.batch_size)
        for index in range(count if limit is None else min(limit, count)):
            batch, size = self.batch(order, index)
            yield index, batch, size

    def content_sha256(self) -> str:
        """SHA-256 of every example in index order: the identity of data the datamodule made."""
        return sha256_structure([sha256_structure(self.dataset[i]) for i in range(len(self.dataset))])
