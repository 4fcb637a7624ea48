"""The size, dirtiness and calendar of a synthetic world (``WorldConfig``)."""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorldConfig:
    """How big, how dirty and where in time the world is."""

    days: int = 3
    users: int = 300
    photos: int = 3000
    """Photos uploaded over the initial ``days``; appended days keep the same daily rate."""
    events_per_day: int = 60_000
    seed: int = 42
    corrupt_rate: float = 0.0
    """Fraction of event lines corrupted; > 0 also adds broken images and a truncated file."""
    start_date: datetime.date = datetime.date(2026, 1, 1)
    files_per_day: int = 4

    def __post_init__(self) -> None:
        if self.days < 1 or self.users < 1 or self.photos < 0 or self.events_per_day < 0:
            raise ValueError(f"world sizes must be positive: {self}")
        if not 0.0 <= self.corrupt_rate < 0.5:
            raise ValueError(f"corrupt_rate must be in [0, 0.5), got {self.corrupt_rate}")
        if self.files_per_day < 1:
            raise ValueError("files_per_day must be >= 1")

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["start_date"] = self.start_date.isoformat()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorldConfig:
        data = dict(data)
        data["start_date"] = datetime.date.fromisoformat(data["start_date"])
        return cls(**data)

    def date_of(self, day_index: int) -> datetime.date:
        return self.start_date + datetime.timedelta(days=day_index)
