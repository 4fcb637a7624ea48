"""The Label Studio interchange: LS exports parsed into annotation rows (attacks included, each
ending as one quarantine row with a reason), tasks and the labeling config written for LS, and
the choice of photos to label next."""

from __future__ import annotations

import copy
import datetime as dt
import gzip
import json
import xml.etree.ElementTree as ET
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from my_data_platform.core import labelstudio as ls
from my_data_platform.core.labelstudio import (
    ANNOTATIONS_SCHEMA,
    QUARANTINE_SCHEMA,
    ExportLimits,
    export_tasks,
    labeling_config,
    parse_export,
    select_for_labelling,
)

LABELS = ("sunset", "beach", "food", "pet", "city", "portrait")
KEY = "landing/annotations/2026-12-01/export.json"


def region(*choices: Any, from_name: str = "content", type: str = "choices") -> dict[str, Any]:
    return {
        "id": "r1",
        "from_name": from_name,
        "to_name": "image",
        "type": type,
        "origin": "manual",
        "value": {"choices": list(choices)},
    }


def annotation(aid: Any = 100, label: Any = "beach", **over: Any) -> dict[str, Any]:
    ann = {
        "id": aid,
        "completed_by": 7,
        "result": [region(label)],
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": "2026-11-30T10:00:00.000000Z",
        "updated_at": "2026-11-30T10:05:00.250000Z",
        "lead_time": 4.2,
        "task": 1,
    }
    ann.update(over)
    return ann


def task(tid: Any = 1, photo_id: Any = 42, anns: Any = None, **over: Any) -> dict[str, Any]:
    t = {
        "id": tid,
        "data": {"image": "s3://bucket/photos/42.jpg", "photo_id": photo_id},
        "annotations": [annotation()] if anns is None else anns,
        "predictions": [],
        "project": 3,
    }
    t.update(over)
    return t


def parse(doc: Any, limits: ExportLimits = ls.DEFAULT_LIMITS) -> tuple[pl.DataFrame, pl.DataFrame]:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    rows, quarantine = parse_export(raw, KEY, LABELS, limits=limits)
    assert rows.schema == pl.Schema(ANNOTATIONS_SCHEMA)
    assert quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert rows["annotation_id"].n_unique() == rows.height
    assert (quarantine["object_key"] == KEY).all()
    for detail in quarantine["detail"]:  # details are inert: one printable, bounded line
        assert detail.isprintable() and len(detail) < 600
    return rows, quarantine


def reasons(quarantine: pl.DataFrame) -> list[tuple[int | None, str]]:
    return list(zip(quarantine["task_index"], quarantine["reason"], strict=True))


# --- the JSON export --------------------------------------------------------------------------


def test_a_clean_export_becomes_canonical_rows() -> None:
    doc = [
        task(1, 42, [annotation(100, "beach"), annotation(101, "sunset", completed_by=8)]),
        task(2, 43, [annotation("a7f-2", "pet", completed_by={"id": 9, "email": "x@y.org"})]),
        task(3, 44, [annotation(102, "food", completed_by={"email": "ann@y.org"})]),
        task(4, 45, []),  # not labelled yet: no row, nothing wrong
    ]
    rows, quarantine = parse(doc)
    assert quarantine.height == 0
    assert rows.sort("annotation_id").to_dicts() == [
        {
            "annotation_id": "ls:1:100",
            "photo_id": 42,
            "annotator": "ls:7",
            "label": "beach",
            "annotated_at": dt.datetime(2026, 11, 30, 10, 5, 0, 250000, tzinfo=dt.UTC),
            "source": "labelstudio",
        },
        {
            "annotation_id": "ls:1:101",
            "photo_id": 42,
            "annotator": "ls:8",
            "label": "sunset",
            "annotated_at": dt.datetime(2026, 11, 30, 10, 5, 0, 250000, tzinfo=dt.UTC),
            "source": "labelstudio",
        },
        {
            "annotation_id": "ls:2:a7f-2",
            "photo_id": 43,
            "annotator": "ls:9",
            "label": "pet",
            "annotated_at": dt.datetime(2026, 11, 30, 10, 5, 0, 250000, tzinfo=dt.UTC),
            "source": "labelstudio",
        },
        {
            "annotation_id": "ls:3:102",
            "photo_id": 44,
            "annotator": "ls:ann@y.org",
            "label": "food",
            "annotated_at": dt.datetime(2026, 11, 30, 10, 5, 0, 250000, tzinfo=dt.UTC),
            "source": "labelstudio",
        },
    ]


def test_times_fall_back_to_created_at_and_naive_times_are_utc() -> None:
    anns = [
        annotation(1, updated_at=None, created_at="2026-11-30T09:00:00"),
        annotation(2, updated_at="2026-11-30T12:00:00+02:00"),
    ]
    rows, _ = parse([task(1, 42, anns)])
    assert rows.sort("annotation_id")["annotated_at"].to_list() == [
        dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC),
    ]


def test_regions_of_other_controls_are_passed_over() -> None:
    ann = annotation(1)
    ann["result"] = [
        {"from_name": "notes", "to_name": "image", "type": "textarea", "value": {"text": ["x"]}},
        region("city"),
    ]
    rows, quarantine = parse([task(1, 42, [ann])])
    assert rows["label"].to_list() == ["city"] and quarantine.height == 0


def _bad_task(mutate: Any) -> dict[str, Any]:
    t = task(2, 43, [annotation(200)])
    mutate(t)
    return t


def _set(path: str, value: Any) -> Any:
    def mutate(t: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = t
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _del(path: str) -> Any:
    def mutate(t: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = t
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        del node[last]

    return mutate


BIG = 10**30
CASES: list[tuple[str, Any, str, str]] = [
    # (case id, mutation, reason, a word the detail must hold)
    ("task id missing", _del("id"), "bad_task_id", "id"),
    ("task id a string", _set("id", "2"), "bad_task_id", "string"),
    ("task id a bool", _set("id", True), "bad_task_id", "boolean"),
    ("data missing", _del("data"), "missing_data", "data"),
    ("data a string", _set("data", "photo 43"), "missing_data", "string"),
    ("photo_id missing", _del("data.photo_id"), "missing_photo_id", "photo_id"),
    ("photo_id null", _set("data.photo_id", None), "missing_photo_id", "null"),
    ("photo_id a string", _set("data.photo_id", "43"), "photo_id_not_int", "string"),
    ("photo_id a float", _set("data.photo_id", 43.0), "photo_id_not_int", "number"),
    ("photo_id a bool", _set("data.photo_id", True), "photo_id_not_int", "boolean"),
    ("photo_id an array", _set("data.photo_id", [43]), "photo_id_not_int", "array"),
    ("photo_id negative", _set("data.photo_id", -43), "photo_id_out_of_range", "-43"),
    ("photo_id past int64", _set("data.photo_id", BIG), "photo_id_out_of_range", "photo_id"),
    ("annotations an object", _set("annotations", {}), "annotations_not_list", "annotations"),
    ("annotation a string", _set("annotations.0", "beach"), "annotation_not_object", "string"),
    ("annotation id missing", _del("annotations.0.id"), "bad_annotation_id", "id"),
    ("annotation id a path", _set("annotations.0.id", "../../x"), "bad_annotation_id", "../"),
    ("annotation id a float", _set("annotations.0.id", 2.5), "bad_annotation_id", "2.5"),
    ("cancelled", _set("annotations.0.was_cancelled", True), "cancelled_annotation", "skipped"),
    ("was_cancelled a string", _set("annotations.0.was_cancelled", "no"), "bad_was_cancelled",
     "boolean"),
    ("completed_by missing", _del("annotations.0.completed_by"), "bad_annotator", "completed_by"),
    ("completed_by a bool", _set("annotations.0.completed_by", False), "bad_annotator", "boolean"),
    ("completed_by empty object", _set("annotations.0.completed_by", {}), "bad_annotator",
     "neither"),
    ("completed_by negative", _set("annotations.0.completed_by", -1), "bad_annotator", "-1"),
    ("timestamps missing", lambda t: [t["annotations"][0].pop(k) for k in
     ("created_at", "updated_at")], "bad_timestamp", "neither"),
    ("timestamp garbage", _set("annotations.0.updated_at", "yesterday"), "bad_timestamp",
     "yesterday"),
    ("timestamp impossible", _set("annotations.0.updated_at", "2026-13-45T10:00:00Z"),
     "bad_timestamp", "ISO"),
    ("timestamp a number", _set("annotations.0.updated_at", 1733400000), "bad_timestamp",
     "integer"),
    ("timestamp from 1970", _set("annotations.0.updated_at", "1970-01-01T00:00:00Z"),
     "bad_timestamp", "outside"),
    ("result missing", _del("annotations.0.result"), "bad_result", "null"),
    ("result an object", _set("annotations.0.result", {}), "bad_result", "object"),
    ("result empty", _set("annotations.0.result", []), "no_choice", "content"),
    ("region a string", _set("annotations.0.result.0", "beach"), "bad_result", "result[0]"),
    ("other control only", _set("annotations.0.result.0.from_name", "label"), "no_choice",
     "'label'"),
    ("wrong region type", _set("annotations.0.result.0.type", "labels"), "bad_result", "type"),
    ("value not an object", _set("annotations.0.result.0.value", ["beach"]), "bad_result",
     "value"),
    ("choices missing", _set("annotations.0.result.0.value", {}), "no_choice", "choices"),
    ("choices empty", _set("annotations.0.result.0.value.choices", []), "no_choice", "empty"),
    ("two choices", _set("annotations.0.result.0.value.choices", ["beach", "city"]),
     "multiple_choices", "2 labels"),
    ("two regions", lambda t: t["annotations"][0]["result"].append(region("city")),
     "multiple_choices", "2 regions"),
    ("label a number", _set("annotations.0.result.0.value.choices", [3]), "label_not_string",
     "integer"),
    ("label unknown", _set("annotations.0.result.0.value.choices", ["dog"]),
     "label_not_in_label_set", "'dog'"),
    ("label in other case", _set("annotations.0.result.0.value.choices", ["Beach"]),
     "label_not_in_label_set", "did you mean 'beach'"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "reason", "word"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_each_bad_record_is_one_quarantine_row_and_the_rest_still_load(
    mutate: Any, reason: str, word: str
) -> None:
    good_before = task(1, 42, [annotation(100, "sunset")])
    good_after = task(3, 44, [annotation(300, "food")])
    rows, quarantine = parse([good_before, _bad_task(mutate), good_after])
    assert rows["annotation_id"].to_list() == ["ls:1:100", "ls:3:300"]
    assert reasons(quarantine) == [(1, reason)]
    assert word in quarantine["detail"][0]
    assert reason in ls.TASK_REASONS + ls.ANNOTATION_REASONS


def test_a_bad_annotation_spoils_only_itself_not_its_task() -> None:
    anns = [annotation(1, "beach"), annotation(2, "dog"), annotation(3, "city", was_cancelled=True)]
    anns.append(annotation(4, "pet"))
    rows, quarantine = parse([task(1, 42, anns)])
    assert rows["annotation_id"].to_list() == ["ls:1:1", "ls:1:4"]
    assert reasons(quarantine) == [(0, "label_not_in_label_set"), (0, "cancelled_annotation")]
    assert "ls:1:2" in quarantine["detail"][0] and "ls:1:3" in quarantine["detail"][1]


def test_a_repeated_annotation_is_quarantined_once_seen_twice() -> None:
    rows, quarantine = parse([task(1, 42, [annotation(5)]), task(1, 42, [annotation(5, "pet")])])
    assert rows["label"].to_list() == ["beach"]
    assert reasons(quarantine) == [(1, "duplicate_annotation_id")]


def test_not_an_object_is_a_task_row() -> None:
    rows, quarantine = parse([task(), 7, None, "task", [task()], {"id": 9}])
    assert rows.height == 1
    assert reasons(quarantine) == [
        (1, "task_not_object"),
        (2, "task_not_object"),
        (3, "task_not_object"),
        (4, "task_not_object"),
        (5, "missing_data"),
    ]


# --- JSON_MIN -----------------------------------------------------------------------------------


def test_json_min_items_are_read_too() -> None:
    base = {
        "image": "s3://b/p.jpg",
        "photo_id": 42,
        "id": 1,
        "annotator": "ann@y.org",
        "annotation_id": 11,
        "created_at": "2026-11-30T10:00:00Z",
        "updated_at": "2026-11-30T10:01:00Z",
        "lead_time": 3.0,
    }
    items = [
        {**base, "content": "beach"},
        {**base, "id": 2, "annotation_id": 12, "content": {"choices": ["pet"]}},
        {**base, "id": 3, "annotation_id": 13, "content": ["city", "food"]},
        {**base, "id": 4, "annotation_id": 14, "photo_id": "42", "content": "pet"},
        {**base, "id": 5, "annotation_id": 15, "annotator": "a\u202eb", "content": "pet"},
    ]
    rows, quarantine = parse(items)
    assert rows.select("annotation_id", "photo_id", "annotator", "label").rows() == [
        ("ls:1:11", 42, "ls:ann@y.org", "beach"),
        ("ls:2:12", 42, "ls:ann@y.org", "pet"),
    ]
    assert reasons(quarantine) == [
        (2, "multiple_choices"),
        (3, "photo_id_not_int"),
        (4, "bad_annotator"),
    ]


# --- hostile files ----------------------------------------------------------------------------


def test_a_file_over_the_byte_limit_is_refused_before_it_is_read() -> None:
    raw = json.dumps([task(i, i, [annotation(i)]) for i in range(50)]).encode()
    limits = ExportLimits(max_bytes=len(raw) - 1)
    rows, quarantine = parse(raw, limits)
    assert rows.height == 0
    assert reasons(quarantine) == [(None, "file_too_large")]
    assert str(len(raw)) in quarantine["detail"][0]
    assert parse(raw, ExportLimits(max_bytes=len(raw)))[0].height == 50


def test_a_gzip_bomb_is_never_inflated() -> None:
    bomb = gzip.compress(b"[" + b" " * (200 << 20) + b"]", compresslevel=9)
    assert len(bomb) < 1 << 20  # 200 MiB of JSON in under a MiB
    rows, quarantine = parse(bomb)
    assert rows.height == 0
    assert reasons(quarantine) == [(None, "compressed_not_supported")]
    assert "gzip" in quarantine["detail"][0]


@pytest.mark.parametrize(
    "raw",
    [b"[" * 200_000, b'{"a":' * 200_000, b"[" * 40 + b"]" * 40],
    ids=["arrays", "objects", "just past the limit"],
)
def test_deep_nesting_is_refused_before_parsing(raw: bytes) -> None:
    rows, quarantine = parse(raw)  # without the check: RecursionError from json
    assert rows.height == 0
    assert reasons(quarantine) == [(None, "too_deep")]


def test_deep_nesting_inside_a_record_spoils_the_file_but_brackets_in_strings_do_not() -> None:
    t = task()
    t["data"]["extra"] = json.loads("[" * 40 + "]" * 40)
    assert reasons(parse([t])[1]) == [(None, "too_deep")]
    t = task(anns=[annotation(1, "[[[[{{{{" * 500 + '\\"[[[[')])
    rows, quarantine = parse([t])
    assert rows.height == 0
    assert reasons(quarantine) == [(0, "label_not_in_label_set")]


def test_escaped_quotes_cost_linear_time_not_quadratic() -> None:
    # An unterminated string of escaped quotes: a string regex that fails at the end restarts
    # at every quote (40k of them took 42 s); this one is 2.5M. Still one clean row.
    raw = b'["' + b'\\"' * 2_500_000
    rows, quarantine = parse(raw)
    assert rows.height == 0
    assert reasons(quarantine) == [(None, "not_json")]


def test_tasks_are_counted_before_parsing() -> None:
    # 10M tiny items would be ~1 GiB of Python objects; refused from the bytes alone
    raw = b"[" + b"[]," * 10_000_000 + b"[]]"
    rows, quarantine = parse(raw, ExportLimits(max_bytes=64 << 20, max_tasks=1000))
    assert reasons(quarantine) == [(None, "too_many_tasks")]
    assert "10000001 tasks" in quarantine["detail"][0]
    commas_in_strings = [task(i, i, [annotation(i, "a,b,[c]")]) for i in range(3)]
    rows, quarantine = parse(commas_in_strings, ExportLimits(max_tasks=3))
    assert rows.height == 0
    assert [r for _, r in reasons(quarantine)] == ["label_not_in_label_set"] * 3


@pytest.mark.parametrize("labels", ["sunset", [], ["a", "a"]])
def test_a_malformed_label_set_is_a_caller_error(labels: Any) -> None:
    with pytest.raises(ValueError):
        parse_export(b"[]", KEY, labels)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not_json"),
        (b"not json at all", "not_json"),
        (b'[{"id": 1,', "not_json"),
        (b"[1] [2]", "not_json"),
        (b"\xff\xfe[\x00]\x00", "not_utf8"),
        (b'["caf\xe9"]', "not_utf8"),
        (b'{"id": 1, "data": {"photo_id": 1}}', "not_a_list"),
        (b'"a string"', "not_a_list"),
        (b"null", "not_a_list"),
        (b"PK\x03\x04zipdata", "compressed_not_supported"),
    ],
)
def test_whole_file_problems_are_one_row(raw: bytes, reason: str) -> None:
    rows, quarantine = parse(raw)
    assert rows.height == 0
    assert reasons(quarantine) == [(None, reason)]
    assert reason in ls.FILE_REASONS


def test_a_utf8_bom_and_an_empty_export_are_fine() -> None:
    rows, quarantine = parse(b"\xef\xbb\xbf" + json.dumps([task()]).encode())
    assert rows.height == 1 and quarantine.height == 0
    rows, quarantine = parse(b"[]")
    assert rows.height == 0 and quarantine.height == 0


def test_too_many_tasks_or_annotations() -> None:
    limits = ExportLimits(max_tasks=3, max_annotations_per_task=2)
    assert reasons(parse([task(i, i) for i in range(4)], limits)[1]) == [(None, "too_many_tasks")]
    anns = [annotation(i) for i in range(3)]
    rows, quarantine = parse([task(1, 1, anns), task(2, 2)], limits)
    assert rows["annotation_id"].to_list() == ["ls:2:100"]
    assert reasons(quarantine) == [(0, "too_many_annotations")]


def _raw_task(photo_id_literal: str, label_literal: str = '"beach"') -> bytes:
    """A task written by hand, for literals ``json.dumps`` will not produce."""
    return (
        '[{"id": 1, "data": {"photo_id": 9}, "annotations": []},'
        '{"id": 2, "data": {"image": "x", "photo_id": ' + photo_id_literal + "},"
        '"annotations": [{"id": 5, "completed_by": 1, "updated_at": "2026-11-30T10:00:00Z",'
        '"result": [{"type": "choices", "from_name": "content", "to_name": "image",'
        '"value": {"choices": [' + label_literal + "]}}]}]}]"
    ).encode()


@pytest.mark.parametrize(
    ("literal", "reason"),
    [
        ("9" * 5000, "photo_id_out_of_range"),  # int(): ValueError past 4300 digits
        ("-" + "9" * 100_000, "photo_id_out_of_range"),
        ("9223372036854775808", "photo_id_out_of_range"),  # 2^63
        ("NaN", "photo_id_not_int"),
        ("Infinity", "photo_id_not_int"),
        ("-Infinity", "photo_id_not_int"),
        ("1e999", "photo_id_not_int"),
        ("43.0", "photo_id_not_int"),
        ("true", "photo_id_not_int"),
        ('43, "photo_id": 44', "duplicate_key"),
    ],
)
def test_number_attacks_spoil_only_their_record(literal: str, reason: str) -> None:
    rows, quarantine = parse(_raw_task(literal))
    assert rows.height == 0
    assert reasons(quarantine) == [(1, reason)]


def test_the_largest_photo_id_is_fine() -> None:
    rows, _ = parse(_raw_task(str(2**63 - 1)))
    assert rows["photo_id"].to_list() == [2**63 - 1]


def test_duplicate_keys_in_an_annotation_or_region_are_quarantined() -> None:
    good = (
        '{"id": 5, "completed_by": 1, "updated_at": "2026-11-30T10:00:00Z", "result": '
        '[{"type": "choices", "from_name": "content", "value": {"choices": ["beach"]}}]}'
    )
    twice_label = good.replace('"choices": ["beach"]', '"choices": ["beach"], "choices": ["pet"]')
    twice_user = good.replace('"id": 5,', '"id": 6, "completed_by": 2,')
    raw = f'[{{"id": 1, "data": {{"photo_id": 3}}, "annotations": [{good}, {twice_label}, '
    raw += f"{twice_user.replace('5', '7')}]}}]"
    rows, quarantine = parse(raw.encode())
    assert rows["annotation_id"].to_list() == ["ls:1:5"]
    assert reasons(quarantine) == [(0, "duplicate_key"), (0, "duplicate_key")]
    assert "'choices'" in quarantine["detail"][0] and "'completed_by'" in quarantine["detail"][1]


HOSTILE_TEXT = [
    "beach\x00",
    "bea\x00ch",
    "\u202ebeach",  # right-to-left override
    "beach\u200d",  # zero-width joiner
    "beach\n",
    "\x1b[31mbeach",  # terminal escape
    "b" * 1_000_000,
    "beac\u0327h",  # combining mark
    "\ud800",  # lone surrogate (json accepts the escape)
]


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=range(len(HOSTILE_TEXT)))
def test_hostile_labels_and_annotators_are_quarantined_with_inert_details(text: str) -> None:
    t = task(1, 42, [annotation(1, text), annotation(2, completed_by={"email": text})])
    rows, quarantine = parse([t, task(2, 43, [annotation(3)])])
    assert rows["annotation_id"].to_list() == ["ls:2:3"]
    assert reasons(quarantine) == [(0, "label_not_in_label_set"), (0, "bad_annotator")]
    label_detail = quarantine["detail"][0]
    for c in ("\x00", "\u202e", "\u200d", "\n", "\x1b", "\ud800"):
        assert c not in label_detail
    if len(text) > 100:
        assert f"({len(text)} chars)" in label_detail


@given(
    st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "id",
                            "data",
                            "annotations",
                            "photo_id",
                            "result",
                            "value",
                            "choices",
                            "completed_by",
                            "updated_at",
                            "from_name",
                            "type",
                            "content",
                            "annotation_id",
                            "annotator",
                        ]
                    ),
                    inner,
                    max_size=5,
                )
            ),
            max_leaves=12,
        ),
        max_size=5,
    )
)
def test_any_json_array_parses_without_raising(doc: list[Any]) -> None:
    raw = json.dumps(doc, allow_nan=True).encode()
    rows, quarantine = parse(raw)
    assert rows["photo_id"].is_between(0, 2**63 - 1).all()
    assert set(quarantine["reason"]) <= set(ls.FILE_REASONS + ls.TASK_REASONS
                                            + ls.ANNOTATION_REASONS)  # fmt: skip
    assert quarantine["task_index"].drop_nulls().is_between(0, len(doc) - 1).all()


# --- tasks, labeling config, round trip -------------------------------------------------------


def _photos() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "photo_id": [11, 12, 13],
            "object_key": ["photos/11.jpg", "photos/12.jpg", "photos/13.jpg"],
            "predicted_class": ["beach", None, "spaceship"],
            "confidence": [0.55, None, float("nan")],
            "reason": ["uncertain", "unlabelled", "disagreement"],
            "score": [0.45, 1.0, 0.7],
        }
    )


def test_export_tasks_writes_ls_import_tasks_with_predictions() -> None:
    tasks = export_tasks(_photos(), image_url="s3://lake/", label_set=LABELS)
    assert tasks[0] == {
        "data": {"image": "s3://lake/photos/11.jpg", "photo_id": 11},
        "meta": {"reason": "uncertain", "score": 0.45},
        "predictions": [
            {
                "model_version": "image_classifier",
                "score": 0.55,
                "result": [
                    {
                        "from_name": "content",
                        "to_name": "image",
                        "type": "choices",
                        "value": {"choices": ["beach"]},
                    }
                ],
            }
        ],
    }
    assert "predictions" not in tasks[1]  # no prediction
    assert "predictions" not in tasks[2]  # a label outside the rulebook is never suggested
    json.dumps(tasks, allow_nan=False)  # strict JSON: no NaN reaches LS
    urls = export_tasks(_photos(), image_url=lambda k: f"https://img/{k.upper()}")
    assert [t["data"]["image"] for t in urls][:1] == ["https://img/PHOTOS/11.JPG"]
    assert urls[2]["predictions"][0]["result"][0]["value"] == {"choices": ["spaceship"]}
    assert "score" not in urls[2]["predictions"][0]  # NaN confidence: no score


def test_export_tasks_refuses_photos_it_cannot_show() -> None:
    photos = _photos().with_columns(object_key=pl.Series([None, "a", "b"], dtype=pl.String))
    with pytest.raises(ValueError, match=r"object_key.*\[11\]"):
        export_tasks(photos, image_url="x/")


def test_labeling_config_is_ls_xml_with_hints() -> None:
    xml = labeling_config(
        LABELS, {"sunset": "Sky at dusk:\n orange & red <light>", "pet": 'A "pet" animal'}
    )
    root = ET.fromstring(xml)
    assert root.tag == "View"
    image = root.find("Image")
    assert image is not None and image.attrib == {"name": "image", "value": "$image"}
    choices = root.find("Choices")
    assert choices is not None
    assert choices.attrib["name"] == "content" and choices.attrib["toName"] == "image"
    assert choices.attrib["choice"] == "single"
    assert [c.attrib["value"] for c in choices] == list(LABELS)
    hints = {c.attrib["value"]: c.attrib.get("hint") for c in choices}
    assert hints["sunset"] == "Sky at dusk: orange & red <light>"
    assert hints["pet"] == 'A "pet" animal' and hints["food"] is None


@pytest.mark.parametrize(
    ("labels", "definitions", "match"),
    [
        ([], None, "empty"),
        (["a", "a"], None, "duplicates"),
        (["a\x00"], None, "printable"),
        (["a"], {"b": "x"}, "not in the label set"),
        (["a"], {"a": "bell\x07"}, "XML"),
    ],
)
def test_labeling_config_refuses_what_ls_could_not_show(
    labels: list[str], definitions: dict[str, str] | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        labeling_config(labels, definitions)


def _simulate_ls(tasks: list[dict[str, Any]], votes: dict[int, list[tuple[int, str]]]) -> bytes:
    """What LS exports after annotators labelled the imported tasks: ids assigned, data kept,
    the predictions kept, annotations in the export format."""
    out = []
    ann_id = 1000
    for tid, t in enumerate(tasks, start=1):
        exported = copy.deepcopy(t)
        exported["id"] = tid
        exported["annotations"] = []
        for user, label in votes.get(t["data"]["photo_id"], []):
            ann_id += 1
            exported["annotations"].append(
                {
                    "id": ann_id,
                    "completed_by": {"id": user, "email": f"u{user}@example.org"},
                    "result": [{**region(label), "to_name": "image"}],
                    "was_cancelled": False,
                    "ground_truth": False,
                    "created_at": f"2026-12-0{user}T08:00:00.000000Z",
                    "updated_at": f"2026-12-0{user}T08:00:0{user}.000000Z",
                    "task": tid,
                }
            )
        out.append(exported)
    return json.dumps(out).encode()


def test_round_trip_export_tasks_then_parse_the_ls_export() -> None:
    photos = _photos()
    tasks = export_tasks(photos, image_url="https://lake/", label_set=LABELS)
    votes = {11: [(1, "beach"), (2, "sunset")], 13: [(3, "city")]}
    rows, quarantine = parse_export(_simulate_ls(tasks, votes), KEY, LABELS)
    assert quarantine.height == 0
    assert rows.sort("annotation_id").to_dicts() == [
        {
            "annotation_id": "ls:1:1001",
            "photo_id": 11,
            "annotator": "ls:1",
            "label": "beach",
            "annotated_at": dt.datetime(2026, 12, 1, 8, 0, 1, tzinfo=dt.UTC),
            "source": "labelstudio",
        },
        {
            "annotation_id": "ls:1:1002",
            "photo_id": 11,
            "annotator": "ls:2",
            "label": "sunset",
            "annotated_at": dt.datetime(2026, 12, 2, 8, 0, 2, tzinfo=dt.UTC),
            "source": "labelstudio",
        },
        {
            "annotation_id": "ls:3:1003",
            "photo_id": 13,
            "annotator": "ls:3",
            "label": "city",
            "annotated_at": dt.datetime(2026, 12, 3, 8, 0, 3, tzinfo=dt.UTC),
            "source": "labelstudio",
        },
    ]


# --- select_for_labelling ---------------------------------------------------------------------


def test_select_puts_unlabelled_uncertain_and_disputed_photos_first() -> None:
    candidates = pl.DataFrame(
        {
            "photo_id": [1, 2, 3, 4, 5, 6, 7],
            "confidence": [0.95, 0.30, 0.30, None, 0.90, 0.40, 0.99],
            "agreement": [None, None, 1.0, None, 0.34, 0.9, 1.0],
            "n_annotations": [0, 0, 3, 0, 3, 1, 5],
        }
    )
    picked = select_for_labelling(candidates, 10)
    assert picked.columns == ["photo_id", "reason", "score"]
    assert picked["photo_id"].to_list() == [4, 2, 5, 6, 3, 1, 7]
    assert picked["reason"].to_list() == [
        "unlabelled", "unlabelled", "disagreement", "uncertain", "uncertain", "unlabelled",
        "uncertain",
    ]  # fmt: skip
    assert picked["score"].to_list() == pytest.approx([1.0, 0.7, 0.66, 0.3, 0.175, 0.05, 0.01 / 6])
    assert select_for_labelling(candidates, 2)["photo_id"].to_list() == [4, 2]
    assert select_for_labelling(candidates, 0).height == 0


def test_select_breaks_ties_by_photo_id_whatever_the_input_order() -> None:
    candidates = pl.DataFrame({"photo_id": [9, 3, 7, 1], "confidence": [None] * 4})
    assert select_for_labelling(candidates, 3)["photo_id"].to_list() == [1, 3, 7]
    shuffled = candidates.sample(fraction=1.0, shuffle=True, seed=1)
    assert select_for_labelling(shuffled, 3).equals(select_for_labelling(candidates, 3))


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (pl.DataFrame({"photo_id": [1, 1]}), "duplicate"),
        (pl.DataFrame({"photo_id": [1], "confidence": [1.5]}), "confidence"),
        (pl.DataFrame({"photo_id": [1], "agreement": [-0.1]}), "agreement"),
        (pl.DataFrame({"photo_id": [1], "n_annotations": [-1]}), "n_annotations"),
        (pl.DataFrame({"confidence": [0.5]}), "photo_id"),
        (pl.DataFrame({"photo_id": [None, 2]}), "null"),
    ],
)
def test_select_refuses_inconsistent_candidates(frame: pl.DataFrame, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        select_for_labelling(frame, 5)


def test_select_treats_nan_confidence_as_unknown() -> None:
    candidates = pl.DataFrame({"photo_id": [1, 2], "confidence": [float("nan"), 0.2]})
    assert select_for_labelling(candidates, 2)["photo_id"].to_list() == [1, 2]
