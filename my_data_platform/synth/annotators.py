"""A simulated labelling vendor: several annotators of different accuracy label a subset of
each day's photos into the OLTP ``photo_annotations`` table, and a few photos per day are
gold items (a known answer) in ``annotation_gold``.

Deterministic per ``(seed, day)``. The true class is the one the image was drawn from; the
vendor only ever writes what each annotator *answered*. Mistakes are realistic rather than
uniform: a diligent annotator who errs mostly picks the class most easily confused with the
true one (sunset <-> beach, city <-> sunset, pet <-> portrait, ...), and the careless
annotator answers right only a third of the time and otherwise mostly clicks the first
choice in the list. That careless pattern is exactly what majority vote cannot discount and
Dawid-Skene can.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from my_data_platform.core.consensus import ANNOTATION_SCHEMA, GOLD_SCHEMA
from my_data_platform.synth.population import CLASSES, day_rng

STREAM_ANNOTATIONS = 6


@dataclass(frozen=True)
class Annotator:
    name: str
    accuracy: float
    careless: bool = False


VENDOR: tuple[Annotator, ...] = (
    Annotator("vendor-ana", 0.93),
    Annotator("vendor-ben", 0.88),
    Annotator("vendor-chen", 0.84),
    Annotator("vendor-dia", 0.78),
    Annotator("vendor-eli", 0.35, careless=True),
)

# the class each class is most easily mistaken for (indices into CLASSES)
_CONFUSED_WITH = {
    "sunset": "beach",
    "beach": "sunset",
    "food": "pet",
    "pet": "portrait",
    "city": "sunset",
    "portrait": "pet",
}

LABELLED_FRACTION = 0.5
"""Share of each day's decodable photos that the vendor labels."""
ANNOTATIONS_PER_PHOTO = 3
GOLD_FRACTION = 0.08
"""Share of the labelled photos that are gold items (their answer is known)."""


def _wrong_answer(rng: np.random.Generator, truth: int, careless: bool) -> int:
    k = len(CLASSES)
    if careless and rng.random() < 0.7:
        return 0  # clicks the first choice
    if not careless and rng.random() < 0.6:
        return CLASSES.index(_CONFUSED_WITH.get(CLASSES[truth], CLASSES[(truth + 1) % k]))
    other = int(rng.integers(0, k - 1))
    return other if other < truth else other + 1


def vendor_annotations(
    seed: int, day_index: int, photos: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(annotations, gold)`` for one day's photos (with ``image_class``, ``image_status``
    and ``uploaded_at``). Broken images are skipped, as the rulebook tells annotators."""
    rng = day_rng(seed, day_index, STREAM_ANNOTATIONS)
    ok = photos.filter(pl.col("image_status") == "ok").sort("photo_id")
    n = ok.height
    chosen = np.sort(rng.choice(n, round(n * LABELLED_FRACTION), replace=False)) if n else []
    picked = ok[list(chosen)] if n else ok
    n_gold = round(picked.height * GOLD_FRACTION)
    gold_idx = set(rng.choice(picked.height, n_gold, replace=False).tolist()) if n_gold else set()
    rows: list[dict] = []
    gold: list[dict] = []
    for i, (pid, cls, up) in enumerate(
        zip(picked["photo_id"], picked["image_class"], picked["uploaded_at"], strict=True)
    ):
        who = rng.choice(len(VENDOR), ANNOTATIONS_PER_PHOTO, replace=False)
        for j in sorted(who.tolist()):
            a = VENDOR[j]
            answer = cls if rng.random() < a.accuracy else _wrong_answer(rng, cls, a.careless)
            delay_s = int(rng.integers(600, 36 * 3600))
            rows.append(
                {
                    "annotation_id": f"vendor:{pid}:{a.name}",
                    "photo_id": int(pid),
                    "annotator": a.name,
                    "label": CLASSES[answer],
                    "annotated_at": up + np.timedelta64(delay_s, "s").item(),
                    "source": "vendor",
                }
            )
        if i in gold_idx:
            gold.append({"photo_id": int(pid), "label": CLASSES[int(cls)]})
    return (
        pl.DataFrame(rows, schema=ANNOTATION_SCHEMA),
        pl.DataFrame(gold, schema=GOLD_SCHEMA),
    )
