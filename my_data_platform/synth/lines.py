"""Rendering event columns as JSON lines and gzipping them into landed files."""

from __future__ import annotations

import datetime
import zlib
from dataclasses import dataclass

import isal.isal_zlib
import numpy as np
import polars as pl
import pyarrow as pa

from my_data_platform.synth.population import CLIENTS

EVENT_TYPES: tuple[str, ...] = ("view", "like", "comment", "share")

_COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class TruncatedFile:
    """The one cut-off gzip file of a corrupted day.

    The file is compressed with a full flush after ``lines_readable`` lines and cut exactly
    at that flush point, so every gzip reader recovers exactly those complete lines (and then
    fails on the missing end of stream); the remaining lines are lost.
    """

    key: str
    lines_written: int
    lines_readable: int
    bytes_full: int
    bytes_kept: int


class LineBuilder:
    """Renders event columns into JSON lines (each ending in ``\\n``) for one day."""

    def __init__(
        self, date: datetime.date, origin: datetime.date, first_second: int, n_seconds: int
    ) -> None:
        self.id_prefix = '{"event_id":"e' + date.strftime("%Y%m%d") + "-"
        self.first_second = first_second
        start = datetime.datetime.combine(origin, datetime.time()) + datetime.timedelta(
            seconds=first_second
        )
        # one pre-rendered ``,"ts":"YYYY-MM-DDTHH:MM:SS`` per second of the window
        self.ts_table = pl.datetime_range(
            start, start + datetime.timedelta(seconds=n_seconds - 1), "1s", eager=True
        ).dt.strftime(',"ts":"%Y-%m-%dT%H:%M:%S')
        self.types = pl.Series(
            [f'","event_type":"{t}","user_id":' for t in EVENT_TYPES], dtype=pl.String
        )
        self.ms_table = pl.Series([f'.{i:03d}Z","dwell_ms":' for i in range(1000)], dtype=pl.String)
        self.clients = pl.Series([f',"client":"{c}"}}\n' for c in CLIENTS], dtype=pl.String)

    def build(self, cols: dict[str, np.ndarray], sl: slice) -> pl.Series:
        """Lines for rows ``sl`` of the columns (``seq`` numbers the event ids)."""
        ts = cols["ts"][sl]
        dwell = cols["dwell"][sl]
        df = pl.DataFrame(
            {
                "seq": cols["seq"][sl] + 1_000_000_000,
                "user_id": cols["user_id"][sl],
                "photo_id": cols["photo_id"][sl],
                "dwell": pl.Series(dwell).set(pl.Series(dwell < 0), None),
            }
        )
        return df.select(
            pl.concat_str(
                [
                    pl.lit(self.id_prefix),
                    pl.col("seq").cast(pl.String).str.slice(1),
                    pl.lit(self.types.gather(cols["etype"][sl])),
                    pl.col("user_id").cast(pl.String),
                    pl.lit(',"photo_id":'),
                    pl.col("photo_id").cast(pl.String),
                    pl.lit(self.ts_table.gather(ts // 1000 - self.first_second)),
                    pl.lit(self.ms_table.gather(ts % 1000)),
                    pl.col("dwell").cast(pl.String).fill_null("null"),
                    pl.lit(self.clients.gather(cols["client"][sl])),
                ]
            ).alias("line")
        ).to_series()


def gzip_lines(lines: pl.Series) -> bytes:
    """Gzip the lines (each ends in ``\\n``) as one file body.

    The body is compressed in ONE call: ISA-L's output depends on how the input is split
    across calls, and Polars' buffer layout (hence the chunks) varies from run to run, so
    feeding chunks made the same world compress to different bytes now and then.
    """
    co = isal.isal_zlib.compressobj(_COMPRESS_LEVEL, isal.isal_zlib.DEFLATED, 31)
    body = b"".join(_body_chunks(lines))
    return co.compress(body) + co.flush()


def _body_chunks(lines: pl.Series) -> list[memoryview]:
    """The concatenated lines as a few zero-copy slices of Polars' string buffers.

    ``concat_str`` writes its rows back to back into a handful of data buffers, so the
    string-view export (no copy) already holds the file body; we only check that every row
    sits right after the previous one. Gathered or scattered series fail the check and take
    the copying large-string export instead.
    """
    if len(lines) == 0:
        return []
    if lines.null_count():
        raise ValueError("event lines must not be null")
    arr = lines.to_arrow(compat_level=pl.CompatLevel.newest())
    if arr.type == pa.string_view():
        bufs = arr.buffers()
        views = np.frombuffer(bufs[1], np.uint32).reshape(-1, 4)[arr.offset : arr.offset + len(arr)]
        lens = views[:, 0].astype(np.int64)
        bidx = views[:, 2].astype(np.int64)
        off = views[:, 3].astype(np.int64)
        same = bidx[1:] == bidx[:-1]
        if lens.min() > 12 and np.all(~same | (off[1:] == off[:-1] + lens[:-1])):
            starts = np.concatenate([[0], np.flatnonzero(~same) + 1])
            ends = np.concatenate([starts[1:], [len(lens)]]) - 1
            return [
                memoryview(bufs[2 + bidx[s]])[off[s] : off[e] + lens[e]]
                for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
            ]
    large = lines.to_arrow(compat_level=pl.CompatLevel.oldest())
    offsets = np.frombuffer(large.buffers()[1], np.int64)
    offsets = offsets[large.offset : large.offset + len(large) + 1]
    return [memoryview(large.buffers()[2])[int(offsets[0]) : int(offsets[-1])]]


def truncated_gzip(key: str, lines: pl.Series) -> tuple[bytes, TruncatedFile]:
    """Compress ``lines`` with a full flush halfway and keep only the bytes before the flush."""
    body = b"".join(_body_chunks(lines))
    readable = len(lines) // 2
    cut = 0
    if readable:
        cut = int(lines.head(readable).str.len_bytes().sum())
    co = zlib.compressobj(6, zlib.DEFLATED, 31)
    kept = co.compress(body[:cut]) + co.flush(zlib.Z_FULL_FLUSH)
    full = kept + co.compress(body[cut:]) + co.flush()
    recovered = zlib.decompressobj(31).decompress(kept)
    if recovered != body[:cut]:  # pragma: no cover - zlib guarantees this at a full flush
        raise RuntimeError("truncated file does not decompress to its readable lines")
    info = TruncatedFile(
        key=key,
        lines_written=len(lines),
        lines_readable=recovered.count(b"\n"),
        bytes_full=len(full),
        bytes_kept=len(kept),
    )
    return kept, info
