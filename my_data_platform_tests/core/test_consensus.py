"""Consensus labels: Dawid-Skene against majority vote with a careless annotator, Krippendorff's
alpha against hand-computed values, gold accuracy, and the rulebook."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from my_data_platform.core import consensus as C
from my_data_platform.core.image_classes import IMAGE_CLASSES
from my_data_platform.core.rulebook import RulebookError, image_content_rulebook, load_rulebook
from my_data_platform.synth.annotators import VENDOR, vendor_annotations
from my_data_platform.synth.population import make_photos_day, make_users

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _rows(triples: list[tuple[int, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "annotation_id": [f"{p}:{a}" for p, a, _ in triples],
            "photo_id": [p for p, _, _ in triples],
            "annotator": [a for _, a, _ in triples],
            "label": [lab for _, _, lab in triples],
            "annotated_at": [T0] * len(triples),
            "source": ["test"] * len(triples),
        },
        schema=C.ANNOTATION_SCHEMA,
    )


def _vendor_world(seed: int = 7, days: int = 3) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The synthetic vendor's annotations and gold over a few days, and the true classes."""
    users = make_users(200, seed, T0.date())
    anns, golds, truths = [], [], []
    for d in range(days):
        photos = make_photos_day(
            seed=seed, day_index=d, total_photos=3000, initial_days=days, start_date=T0.date(),
            users=users, corrupt_rate=0.01,
        )  # fmt: skip
        a, g = vendor_annotations(seed, d, photos)
        anns.append(a)
        golds.append(g)
        truths.append(
            photos.select(
                "photo_id",
                pl.Series(IMAGE_CLASSES).gather(photos["image_class"]).alias("label"),
            )
        )
    return pl.concat(anns), pl.concat(golds), pl.concat(truths)


def test_dawid_skene_beats_majority_vote_with_a_careless_annotator() -> None:
    """Against the hidden truth (a test, not the graph): the consensus is right more often than
    the majority vote, and gives the careless annotator a near-flat confusion matrix."""
    ann, _gold, truth = _vendor_world()
    assert "vendor-eli" in set(ann["annotator"])  # the careless one is present
    mv = C.majority_vote(ann, IMAGE_CLASSES)
    ds = C.dawid_skene(ann, IMAGE_CLASSES)
    mv_ok, n = C.accuracy_against(mv, truth)
    ds_ok, n2 = C.accuracy_against(ds.labels, truth)
    assert n == n2 == ann["photo_id"].n_unique() > 1000
    print(f"majority vote {mv_ok / n:.4f}, Dawid-Skene {ds_ok / n:.4f} on {n} photos")
    assert ds_ok / n > mv_ok / n + 0.02
    assert ds.converged
    diag = {a: float(np.diag(m).mean()) for a, m in ds.confusion.items()}
    assert diag["vendor-eli"] == min(diag.values()) < 0.5
    assert diag["vendor-ana"] > 0.85
    # the posterior is a confidence: where it is high the label is right more often
    j = ds.labels.join(truth.rename({"label": "truth"}), on="photo_id")
    hi = j.filter(pl.col("confidence") >= 0.95)
    lo = j.filter(pl.col("confidence") < 0.95)
    assert (hi["label"] == hi["truth"]).mean() > (lo["label"] == lo["truth"]).mean()


def test_annotator_report_measures_each_annotator_on_gold() -> None:
    ann, gold, _ = _vendor_world()
    ds = C.dawid_skene(ann, IMAGE_CLASSES)
    report = C.annotator_report(ann, ds.labels, gold)
    assert report["annotator"].to_list() == sorted(a.name for a in VENDOR)
    acc = dict(zip(report["annotator"], report["gold_accuracy"], strict=True))
    assert acc["vendor-eli"] < 0.6 < acc["vendor-ana"]
    assert report["annotations"].sum() == ann.height
    assert (report["gold_correct"] <= report["gold_answered"]).all()


def test_vendor_is_deterministic_per_seed_and_skips_broken_images() -> None:
    a1, g1, _ = _vendor_world(seed=3, days=1)
    a2, g2, _ = _vendor_world(seed=3, days=1)
    a3, _, _ = _vendor_world(seed=4, days=1)
    assert a1.equals(a2) and g1.equals(g2)
    assert not a1.equals(a3)
    assert (a1.group_by("photo_id").len()["len"] == 3).all()
    assert a1["annotation_id"].n_unique() == a1.height
    assert set(g1["photo_id"]) <= set(a1["photo_id"])
    users = make_users(200, 3, T0.date())
    photos = make_photos_day(
        seed=3, day_index=0, total_photos=3000, initial_days=1, start_date=T0.date(),
        users=users, corrupt_rate=0.01,
    )  # fmt: skip
    broken = set(photos.filter(pl.col("image_status") != "ok")["photo_id"])
    assert broken and not broken & set(a1["photo_id"])


def test_krippendorff_alpha_matches_hand_computed_values() -> None:
    # perfect agreement
    alpha, n = C.krippendorff_alpha(
        _rows([(1, "a", "x"), (1, "b", "x"), (2, "a", "y"), (2, "b", "y")])
    )
    assert alpha == pytest.approx(1.0) and n == 4
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal example with
    # missing values: 4 coders, 12 units -> alpha = 0.743
    data = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    }
    triples = [
        (u, coder, str(v))
        for coder, vals in data.items()
        for u, v in enumerate(vals)
        if v is not None
    ]
    alpha, _ = C.krippendorff_alpha(_rows(triples))
    assert alpha == pytest.approx(0.743, abs=0.001)
    # no pairable units: no evidence
    assert C.krippendorff_alpha(_rows([(1, "a", "x"), (2, "a", "y")]))[0] is None


def test_majority_vote_ties_follow_the_rulebook_order_and_relabels_replace() -> None:
    rows = _rows([(1, "a", "beach"), (1, "b", "sunset")])
    assert C.majority_vote(rows, IMAGE_CLASSES)["label"].to_list() == ["sunset"]
    relabel = pl.concat(
        [
            _rows([(5, "a", "food")]),
            _rows([(5, "a", "pet")]).with_columns(
                pl.lit("5:a:2").alias("annotation_id"),
                pl.lit(T0 + dt.timedelta(hours=1)).alias("annotated_at"),
            ),
        ]
    )
    latest = C.latest_per_annotator(relabel)
    assert latest["label"].to_list() == ["pet"]
    with pytest.raises(ValueError, match="outside the label set"):
        C.encode(_rows([(1, "a", "unicorn")]), IMAGE_CLASSES)


def test_rulebook_ships_as_package_data_and_defines_the_label_set(tmp_path) -> None:
    rb = image_content_rulebook()
    assert rb.label_set == IMAGE_CLASSES
    for rule in rb.labels:
        assert rule.definition and rule.examples
    bad = tmp_path / "rb.json"
    bad.write_text(json.dumps({"name": "x", "version": 1, "question": "?", "instructions": [],
                               "labels": [{"name": "a", "definition": "d"}]}))  # fmt: skip
    with pytest.raises(RulebookError, match=r"labels\[0\]\.examples"):
        load_rulebook(bad)
    bad.write_text("{not json")
    with pytest.raises(RulebookError, match=r"rb\.json: not JSON"):
        load_rulebook(bad)
