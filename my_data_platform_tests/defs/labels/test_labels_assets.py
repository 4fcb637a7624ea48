"""The labels domain's own logic: validation against the rulebook (hostile rows included) and
consensus with gold items."""

from __future__ import annotations

import datetime as dt

import polars as pl

from my_data_platform.core import consensus as C
from my_data_platform.core.image_classes import IMAGE_CLASSES
from my_data_platform.defs.labels.assets import consensus_labels, validate_annotations

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _frame(rows: list[dict]) -> pl.DataFrame:
    base = {"annotated_at": T0, "source": "vendor"}
    return pl.DataFrame([{**base, **r} for r in rows], schema=C.ANNOTATION_SCHEMA)


def test_validation_quarantines_every_bad_row_with_a_reason() -> None:
    rows = _frame(
        [
            {"annotation_id": "ok1", "photo_id": 1, "annotator": "a", "label": "beach"},
            {"annotation_id": "ok1", "photo_id": 1, "annotator": "b", "label": "beach"},
            {"annotation_id": "x2", "photo_id": 2, "annotator": "a", "label": "Beach"},
            {"annotation_id": "x3", "photo_id": 3, "annotator": "a", "label": "beach\u202e"},
            {"annotation_id": "x4", "photo_id": 3, "annotator": "a", "label": "'; DROP TABLE x;--"},
            {"annotation_id": "x5", "photo_id": 99, "annotator": "a", "label": "food"},
            {"annotation_id": "x6", "photo_id": 2, "annotator": None, "label": "food"},
            {"annotation_id": "x7", "photo_id": 2, "annotator": "a", "label": "x" * 10_000},
            {"annotation_id": "ok8", "photo_id": 2, "annotator": "c", "label": "food"},
        ]
    )
    good, bad, superseded = validate_annotations(rows, pl.Series([1, 2, 3]), IMAGE_CLASSES)
    # the same id twice is one annotation: its newest version (here, the later row) is kept
    assert good["annotation_id"].to_list() == ["ok1", "ok8"]
    assert good["annotator"].to_list() == ["b", "c"]
    assert superseded == 1
    reasons = dict(zip(bad["annotation_id"], bad["reason"], strict=True))
    assert reasons == {
        "x2": "label_not_in_rulebook",
        "x3": "label_not_in_rulebook",
        "x4": "label_not_in_rulebook",
        "x5": "unknown_photo",
        "x6": "missing_field",
        "x7": "label_not_in_rulebook",
    }
    assert good.height + bad.height + superseded == rows.height  # nothing lost
    detail = dict(zip(bad["annotation_id"], bad["detail"], strict=True))
    assert detail["x6"] == "null in annotator"
    assert bad["label"].str.len_chars().max() <= 200  # a huge value is cut, not copied


def test_gold_items_keep_their_known_answer_and_others_get_consensus() -> None:
    rows = _frame(
        [
            {"annotation_id": f"{p}{a}", "photo_id": p, "annotator": a, "label": lab}
            for p, votes in {1: "ssb", 2: "bbs", 3: "fff"}.items()
            for a, lab in zip("abc", votes, strict=True)
            for lab in [{"s": "sunset", "b": "beach", "f": "food"}[lab]]
        ]
    )
    gold = pl.DataFrame({"photo_id": [2, 7]}, schema={"photo_id": pl.Int64}).with_columns(
        pl.Series("label", ["sunset", "pet"])
    )
    labels, ds = consensus_labels(rows, gold, IMAGE_CLASSES)
    assert ds is not None
    got = {r["photo_id"]: (r["label"], r["method"]) for r in labels.iter_rows(named=True)}
    assert got[1] == ("sunset", "dawid_skene")
    assert got[2] == ("sunset", "gold")  # the known answer wins over the annotators' majority
    assert got[3] == ("food", "dawid_skene")
    assert got[7] == ("pet", "gold")  # a gold item nobody annotated is still a label
    assert labels.filter(pl.col("method") == "gold")["confidence"].to_list() == [1.0, 1.0]


def test_no_annotations_give_an_empty_label_table() -> None:
    labels, ds = consensus_labels(
        pl.DataFrame(schema=C.ANNOTATION_SCHEMA), pl.DataFrame(schema=C.GOLD_SCHEMA), IMAGE_CLASSES
    )
    assert ds is None and labels.height == 0
    assert labels.columns == [
        "photo_id",
        "label",
        "confidence",
        "n_annotations",
        "agreement",
        "method",
    ]


def test_landed_exports_are_uploads_like_any_other(tmp_path) -> None:
    """Every landed export is read on its own: a good one loads, and an oversized file (judged
    from the listing, before a byte is read), a gzip, non-JSON bytes and a link outside the
    store each become one quarantine row naming the file, without stopping the others."""
    import gzip
    import json
    import os

    from my_data_platform.core import labelstudio as LS
    from my_data_platform.core.objectstore import LocalObjectStore
    from my_data_platform.defs.labels.imports import landed_label_studio

    store = LocalObjectStore(tmp_path / "lake")
    task = {
        "id": 1,
        "data": {"photo_id": 7, "image": "/x/7.jpg"},
        "annotations": [
            {
                "id": 11,
                "completed_by": 3,
                "result": [
                    {
                        "from_name": "content",
                        "to_name": "image",
                        "type": "choices",
                        "value": {"choices": ["pet"]},
                    }
                ],
                "created_at": "2026-03-01T10:00:00Z",
            }
        ],
    }
    store.put_bytes("landing/annotations/a-good.json", json.dumps([task]).encode())
    store.put_bytes("landing/annotations/b-big.json", b"[" + b" " * 5000 + b"]")
    store.put_bytes("landing/annotations/c-bomb.json.gz", gzip.compress(b"[" * 100_000))
    store.put_bytes("landing/annotations/d-text.json", b"\xff\xfe not json")
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps([task]))
    os.symlink(secret, tmp_path / "lake/landing/annotations/e-link.json")
    limits = LS.ExportLimits(max_bytes=4096)
    rows, quarantine, files = landed_label_studio(store, IMAGE_CLASSES, limits)
    assert rows["annotation_id"].to_list() == ["ls:1:11"]
    assert rows["label"].to_list() == ["pet"] and rows["photo_id"].to_list() == [7]
    got = dict(zip(quarantine["object_key"], quarantine["reason"], strict=True))
    assert got == {
        "landing/annotations/b-big.json": "file_too_large",
        "landing/annotations/c-bomb.json.gz": "compressed_not_supported",
        "landing/annotations/d-text.json": "not_utf8",
    }
    assert files == 4  # the link is never listed, so never read
