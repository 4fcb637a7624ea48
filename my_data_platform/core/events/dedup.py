"""First-wins deduplication of event_ids across the files of a day, on sorted 64-bit hashes
with the strings deciding."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from my_data_platform.core.events.decode import DecodedLines

if TYPE_CHECKING:
    from my_data_platform.core.events.failures import _FileError


@dataclass
class _Screened:
    """One file validated and id-checked: all that is left is the cross-file duplicate check.

    ``events`` holds the lines that passed every check so far, in line order, in
    ``EVENTS_SCHEMA``; ``sorted_hashes`` are their event_ids' hashes in ascending order, and
    ``order`` the row of ``events`` each one belongs to.
    """

    name: str
    lines: DecodedLines
    events: pa.Table
    valid_rid: np.ndarray
    """Each row of ``events``: its index in ``lines``."""
    quarantine: pa.Table
    """The lines that failed a check, in line order, in ``QUARANTINE_SCHEMA``."""
    event_ids: _EventIds
    sorted_hashes: np.ndarray
    order: np.ndarray
    extra_field_lines: int
    file_error: _FileError | None = None
    """Why the file was not read to its end, if it was not."""


@dataclass
class _EventIds:
    """The event_ids of a file's loaded rows, for the duplicate checks to take rows from.

    They stay in the one piece the typed parse made (``values``), which may hold rows the id
    checks dropped since: ``rows`` maps each loaded row to its place there (None: the same).
    The loaded rows themselves are slices around the dropped ones, so taking from their
    column would walk hundreds of chunks, and copying it would cost more than the takes.
    """

    values: pa.Array
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values) if self.rows is None else self.rows.size

    def take(self, rows: np.ndarray) -> pa.Array:
        return self.values.take(pa.array(rows if self.rows is None else self.rows[rows]))


#: Low bits of a packed (hash, row) word that hold the row; the hash's low 40 bits sit above.
_ROW_BITS = 24
_ROW_MASK = np.uint64((1 << _ROW_BITS) - 1)


def _sorted_id_hashes(id_hash: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hashes (40 bits of them) in ascending order, and the row of each.

    Hash and row are packed into one word (the hash above ``_ROW_BITS``) so that a plain sort,
    far faster than an argsort, orders both.
    """
    hashes = id_hash << np.uint64(_ROW_BITS)
    if hashes.size > 1 << _ROW_BITS:  # too many rows to pack
        order = np.argsort(hashes, kind="stable")
        return hashes[order], order
    packed = hashes | np.arange(hashes.size, dtype=np.uint64)
    packed.sort()
    return packed & ~_ROW_MASK, (packed & _ROW_MASK).astype(np.intp)


class _Deduplicator:
    """First-wins duplicate detection over files fed in order, one file at a time.

    A row is a duplicate when its event_id appeared in an earlier valid row (file order, then
    line order). Hashes narrow the search and strings decide, so a collision never drops an
    event. Every hash seen so far is kept sorted, split by its top bits into buckets small
    enough to stay in cache: a new file's sorted hashes are looked up in and merged into each
    bucket, and only rows whose hash is already there (the duplicates, and the rare
    collision) are compared with the earlier files' ids.
    """

    _BUCKET_BITS = 6

    def __init__(self) -> None:
        self._seen = [np.empty(0, dtype=np.uint64) for _ in range(1 << self._BUCKET_BITS)]
        self._edges = np.arange(1, 1 << self._BUCKET_BITS, dtype=np.uint64) << np.uint64(
            64 - self._BUCKET_BITS
        )
        self._files: list[tuple[np.ndarray, np.ndarray, _EventIds]] = []

    def add(self, s: _Screened) -> np.ndarray:
        """The rows of ``s.events`` that are duplicates, ascending."""
        ids = s.event_ids
        ordered = s.sorted_hashes
        dup = self._within(s.order, ordered, ids)
        hit = np.zeros(ordered.size, dtype=bool)
        bounds = [0, *np.searchsorted(ordered, self._edges).tolist(), ordered.size]
        for bucket, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            mine, seen = ordered[lo:hi], self._seen[bucket]
            if seen.size and mine.size:
                at = np.minimum(np.searchsorted(seen, mine), seen.size - 1)
                hit[lo:hi] = seen[at] == mine
            merged = np.concatenate([seen, mine])
            merged.sort(kind="stable")  # two sorted runs: one merge pass
            self._seen[bucket] = merged
        if hit.any():
            dup |= self._earlier(s.order[hit], ordered[hit], ids)
        self._files.append((ordered, s.order, ids))
        return np.flatnonzero(dup)

    @staticmethod
    def _within(order: np.ndarray, ordered: np.ndarray, ids: _EventIds) -> np.ndarray:
        dup = np.zeros(ordered.size, dtype=bool)
        same = ordered[1:] == ordered[:-1]
        if not same.any():
            return dup
        in_group = np.zeros(ordered.size, dtype=bool)
        in_group[1:] |= same
        in_group[:-1] |= same
        rows = np.sort(order[in_group])  # rows that share a hash with another, in line order
        first = pl.Series(ids.take(rows)).is_first_distinct().to_numpy()
        dup[rows[~first]] = True
        return dup

    def _earlier(self, cand: np.ndarray, want: np.ndarray, ids: _EventIds) -> np.ndarray:
        """Which rows ``cand`` (with sorted hashes ``want``) repeat an id of an earlier file."""
        dup = np.zeros(len(ids), dtype=bool)
        mine = pl.Series(ids.take(cand))
        for sorted_hashes, order, their_ids in self._files:
            lo = np.searchsorted(sorted_hashes, want, side="left")
            hi = np.searchsorted(sorted_hashes, want, side="right")
            n = hi - lo
            if not n.any():
                continue
            which = np.repeat(np.arange(cand.size), n)  # index into cand, one per earlier match
            at = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
            theirs = pl.Series(their_ids.take(order[at]))
            equal = (mine.gather(which) == theirs).to_numpy()
            dup[cand[which[equal]]] = True
        return dup
