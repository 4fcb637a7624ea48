"""Peak memory of a landed day, read from /proc: a gzip that inflates to 1 GiB stays bounded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from isal import isal_zlib

from my_data_platform_tests.core.events.landed import gz, line

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc"),
]

#: Ingests the files named in argv (default limits) in a fresh process; prints its peak RSS.
_INGEST = """
import datetime as dt, json, sys
from pathlib import Path
from my_data_platform.core.events import ingest_day
files = [(Path(p).name, Path(p).read_bytes) for p in sys.argv[1:]]
r = ingest_day(files, dt.date(2026, 1, 1), None, None)
hwm = next(int(s.split()[1]) for s in open("/proc/self/status") if s.startswith("VmHWM:"))
print(json.dumps({"hwm_kib": hwm, "loaded": r.stats.loaded, "rows": r.quarantine.to_pylist()},
                 default=str))
"""


def _bomb(path: Path, inflated: int = 1 << 30) -> None:
    """A gzip of ``inflated`` bytes of one repeated event line, written a block at a time."""
    block = (line().encode() + b"\n") * ((4 << 20) // (len(line()) + 1))
    c = isal_zlib.compressobj(3, isal_zlib.DEFLATED, 31)
    with path.open("wb") as f:
        written = 0
        while written < inflated:
            part = block[: inflated - written]
            f.write(c.compress(part))
            written += len(part)
        f.write(c.flush())


def _peak(files: list[Path]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _INGEST, *map(str, files)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads(out.stdout.splitlines()[-1])


def test_a_bomb_day_stays_bounded_and_the_bomb_is_one_row(tmp_path: Path) -> None:
    normal = [tmp_path / f"part-{i}.jsonl.gz" for i in range(4)]
    for i, p in enumerate(normal):
        p.write_bytes(gz(*(line(event_id=f"{i}-{n}") for n in range(20_000))))
    bomb = tmp_path / "bomb.jsonl.gz"
    _bomb(bomb)
    assert bomb.stat().st_size < 16 << 20

    normal_day = _peak(normal)
    bomb_day = _peak([*normal, bomb])
    print(
        f"peak RSS: normal day {normal_day['hwm_kib'] / 1024:.0f} MiB, "
        f"day with a 1 GiB gzip bomb {bomb_day['hwm_kib'] / 1024:.0f} MiB"
    )
    assert normal_day["loaded"] == bomb_day["loaded"] == 80_000
    assert normal_day["rows"] == []
    ((row,),) = [bomb_day["rows"]]
    assert (row["source_file"], row["reason"]) == (bomb.name, "file_too_large")
    assert row["length"] == bomb.stat().st_size
    assert bomb_day["hwm_kib"] < 1 << 20  # under 1 GiB: never inflated past the 512 MiB limit
