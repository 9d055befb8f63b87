"""The files of a run as a few numpy arrays: :class:`PathTable` (strings in one byte blob) and
:class:`AudioIndex` (paths, durations, and the segments of prepared files).

Why arrays: a corpus of 2 million files held as 2 million Python objects is copied, page by
page, into every DataLoader worker. The workers inherit the objects by fork, and merely touching
one (a reference count going up and down) writes its page, which the kernel then copies
(pytorch/pytorch#13246): each worker grows to the size of the list. A numpy array is one object
whose data pages are only read, so they stay shared however many workers there are.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


class PathTable:
    """``n`` strings in one UTF-8 byte blob: string ``i`` is ``blob[starts[i]:ends[i]]``.

    blob: [bytes] uint8; starts, ends: [n] int64. The blob may hold more than the strings (a
    prepared manifest's bytes are the blob of both its path columns, with no copy)."""

    def __init__(self, blob: np.ndarray, starts: np.ndarray, ends: np.ndarray):
        self.blob = np.asarray(blob, dtype=np.uint8)
        # own copies of strided views (a column of a parser's [rows, 3] array would keep all of it)
        self.starts = np.ascontiguousarray(starts, dtype=np.int64)
        self.ends = np.ascontiguousarray(ends, dtype=np.int64)

    @classmethod
    def from_strings(cls, strings) -> "PathTable":
        encoded = [s.encode("utf-8", "surrogateescape") for s in strings]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        ends = np.cumsum(lengths)
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), ends - lengths, ends)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i) -> str:
        i = int(i)
        return self.blob[self.starts[i]:self.ends[i]].tobytes().decode("utf-8", "surrogateescape")

    def encoded(self, start: int = 0, stop: int | None = None) -> list:
        """Strings ``start:stop`` as a list of ``bytes``, for work that needs many at once (hashing,
        writing a report): take them in blocks (:meth:`blocks`), not all 2 million at once."""
        base = self.blob.base  # a manifest's bytes, if the blob is a view of them: no copy
        data = base if isinstance(base, bytes) and len(base) == len(self.blob) else self.blob.tobytes()
        return [data[a:b] for a, b in zip(self.starts[start:stop].tolist(), self.ends[start:stop].tolist())]

    def blocks(self, size: int = 1 << 16):
        """The strings as lists of at most ``size`` ``bytes``, in order."""
        base = self.blob.base
        data = base if isinstance(base, bytes) and len(base) == len(self.blob) else self.blob.tobytes()
        for first in range(0, len(self), size):
            yield [data[a:b] for a, b in zip(self.starts[first:first + size].tolist(),
                                             self.ends[first:first + size].tolist())]

    def __iter__(self):
        return (b.decode("utf-8", "surrogateescape") for block in self.blocks() for b in block)

    @staticmethod
    def concat(tables) -> "PathTable":
        tables = list(tables)
        if len(tables) == 1:
            return tables[0]
        shifts = np.cumsum([0] + [len(t.blob) for t in tables[:-1]])
        return PathTable(np.concatenate([t.blob for t in tables]) if tables else np.zeros(0, np.uint8),
                         np.concatenate([t.starts + k for t, k in zip(tables, shifts)]),
                         np.concatenate([t.ends + k for t, k in zip(tables, shifts)]))


@dataclass
class AudioIndex:
    """The files a run trains on: item ``i`` is one audio file (for a prepared corpus, one
    original source file, whatever number of segment files it was cut into).

    paths: [n] the files (prepared: the source paths); seconds: [n] float64 durations;
    frames: [n] int64 samples at 24 kHz of a prepared item, -1 for a file read by its path
    (decoded, mixed down and resampled when a crop is read);
    seg_first: [n + 1] int64, item i's segments are ``seg_first[i]:seg_first[i + 1]`` (none for a
    file read by its path); seg_paths: [m] the segment files as their manifest lists them
    (relative to ``roots[root[i]]``, the prepared folder of item i; root: [n] int32, -1 for none);
    seg_offset, seg_frames: [m] int64, each segment's first sample within its item and its length
    (at 24 kHz; an item's segments tile [0, frames)).
    """

    paths: PathTable
    seconds: np.ndarray
    frames: np.ndarray
    seg_first: np.ndarray
    seg_paths: PathTable
    seg_offset: np.ndarray
    seg_frames: np.ndarray
    root: np.ndarray
    roots: tuple = ()

    def __len__(self) -> int:
        return len(self.seconds)

    @classmethod
    def of_files(cls, paths, seconds) -> "AudioIndex":
        """Files read by their path (decoded at crop time), of the given durations."""
        table = paths if isinstance(paths, PathTable) else PathTable.from_strings(paths)
        n = len(table)
        return cls(table, np.asarray(seconds, dtype=np.float64).reshape(n), np.full(n, -1, dtype=np.int64),
                   np.zeros(n + 1, dtype=np.int64), PathTable.from_strings([]), np.zeros(0, np.int64),
                   np.zeros(0, np.int64), np.full(n, -1, dtype=np.int32))

    @staticmethod
    def concat(parts) -> "AudioIndex":
        parts = list(parts)
        if len(parts) == 1:
            return parts[0]
        seg_shift = np.cumsum([0] + [len(p.seg_offset) for p in parts[:-1]])
        root_shift = np.cumsum([0] + [len(p.roots) for p in parts[:-1]])
        cat = np.concatenate
        return AudioIndex(PathTable.concat(p.paths for p in parts), cat([p.seconds for p in parts]),
                          cat([p.frames for p in parts]),
                          cat([[0]] + [p.seg_first[1:] + s for p, s in zip(parts, seg_shift)]).astype(np.int64),
                          PathTable.concat(p.seg_paths for p in parts), cat([p.seg_offset for p in parts]),
                          cat([p.seg_frames for p in parts]),
                          cat([np.where(p.root >= 0, p.root + r, -1) for p, r in zip(parts, root_shift)]).astype(np.int32),
                          sum((tuple(p.roots) for p in parts), ()))

    def segment_path(self, item: int, segment: int) -> str:
        """Segment ``segment`` (an index into the seg_* arrays) of item ``item``, as a path to open."""
        return os.path.join(self.roots[self.root[item]], self.seg_paths[segment])
