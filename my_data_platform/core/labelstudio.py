"""The Label Studio interchange: reading LS JSON exports into annotation rows, writing LS tasks
and the labeling config, and choosing which photos to send for labelling next.

An export landed under ``landing/annotations/`` is input from outside: any byte of it may be
hostile. :func:`parse_export` checks the file's size before reading it, its nesting depth before
parsing it, and parses numbers, constants and objects through hooks, so a huge integer, a
``NaN`` or a duplicated key spoils only the record that holds it. Every task or annotation that
cannot become a row becomes one quarantine row naming the field and why, and one bad record never
stops the others. Facts about the formats come from Label Studio's docs ("Export annotations",
"Task format", "Import pre-annotated data"); no LS code is used.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

SOURCE = "labelstudio"
#: The Choices control of our labeling config and the Image object it labels.
FROM_NAME = "content"
TO_NAME = "image"

ANNOTATIONS_SCHEMA: dict[str, pl.DataType] = {
    "annotation_id": pl.String(),
    "photo_id": pl.Int64(),
    "annotator": pl.String(),
    "label": pl.String(),
    "annotated_at": pl.Datetime("us", "UTC"),
    "source": pl.String(),
}
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "object_key": pl.String(),
    "task_index": pl.Int64(),  # null for a whole-file problem
    "reason": pl.String(),
    "detail": pl.String(),
}

# Whole-file reasons: one quarantine row for the file, task_index null.
FILE_TOO_LARGE = "file_too_large"
COMPRESSED_NOT_SUPPORTED = "compressed_not_supported"
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
TOO_DEEP = "too_deep"
NOT_A_LIST = "not_a_list"
TOO_MANY_TASKS = "too_many_tasks"
# Task reasons: one row for the task (and so for all its annotations).
TASK_NOT_OBJECT = "task_not_object"
DUPLICATE_KEY = "duplicate_key"
BAD_TASK_ID = "bad_task_id"
MISSING_DATA = "missing_data"
MISSING_PHOTO_ID = "missing_photo_id"
PHOTO_ID_NOT_INT = "photo_id_not_int"
PHOTO_ID_OUT_OF_RANGE = "photo_id_out_of_range"
ANNOTATIONS_NOT_LIST = "annotations_not_list"
TOO_MANY_ANNOTATIONS = "too_many_annotations"
# Annotation reasons: one row per annotation.
ANNOTATION_NOT_OBJECT = "annotation_not_object"
BAD_ANNOTATION_ID = "bad_annotation_id"
DUPLICATE_ANNOTATION_ID = "duplicate_annotation_id"
CANCELLED_ANNOTATION = "cancelled_annotation"
BAD_WAS_CANCELLED = "bad_was_cancelled"
BAD_ANNOTATOR = "bad_annotator"
BAD_TIMESTAMP = "bad_timestamp"
BAD_RESULT = "bad_result"
NO_CHOICE = "no_choice"
MULTIPLE_CHOICES = "multiple_choices"
LABEL_NOT_STRING = "label_not_string"
LABEL_NOT_IN_LABEL_SET = "label_not_in_label_set"

FILE_REASONS = (
    FILE_TOO_LARGE, COMPRESSED_NOT_SUPPORTED, NOT_UTF8, NOT_JSON, TOO_DEEP, NOT_A_LIST,
    TOO_MANY_TASKS,
)  # fmt: skip
TASK_REASONS = (
    TASK_NOT_OBJECT, DUPLICATE_KEY, BAD_TASK_ID, MISSING_DATA, MISSING_PHOTO_ID,
    PHOTO_ID_NOT_INT, PHOTO_ID_OUT_OF_RANGE, ANNOTATIONS_NOT_LIST, TOO_MANY_ANNOTATIONS,
)  # fmt: skip
ANNOTATION_REASONS = (
    ANNOTATION_NOT_OBJECT, DUPLICATE_KEY, BAD_ANNOTATION_ID, DUPLICATE_ANNOTATION_ID,
    CANCELLED_ANNOTATION, BAD_WAS_CANCELLED, BAD_ANNOTATOR, BAD_TIMESTAMP, BAD_RESULT, NO_CHOICE,
    MULTIPLE_CHOICES, LABEL_NOT_STRING, LABEL_NOT_IN_LABEL_SET,
)  # fmt: skip

_INT64_MAX = 2**63 - 1
#: Magic bytes of compressed containers: an export must be plain JSON (no inflate, no bomb).
_COMPRESSED_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"PK\x03\x04": "zip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
#: One JSON string literal (escapes included), unrolled so the regex never backtracks. An
#: unterminated string runs to the end of the text: were it to fail instead, the search would
#: restart at every later quote (``"\\"\\"...`` would cost quadratic time).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_ANNOTATION_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class ExportLimits:
    """What one landed LS export may cost to read; past a file limit the whole file is one
    quarantine row, past a record limit that record is."""

    max_bytes: int = 64 << 20
    """Checked on the raw bytes before anything is decoded or parsed."""
    max_tasks: int = 200_000
    max_depth: int = 32
    """JSON nesting depth; an LS task needs about 7. Checked before parsing, so a deeply
    nested array never reaches the recursive parser."""
    max_annotations_per_task: int = 1_000
    max_regions_per_annotation: int = 100
    max_int_digits: int = 20
    """Longer integer literals are never converted (Python's int() is quadratic in digits)."""
    max_string_chars: int = 256
    """Longest annotator or timestamp string accepted."""


DEFAULT_LIMITS = ExportLimits()


# --- parsing helpers ------------------------------------------------------------------------


class _Oversized:
    """An integer literal with too many digits, kept unconverted so only its record fails."""

    def __init__(self, literal: str) -> None:
        self.digits = len(literal)

    def __repr__(self) -> str:
        return f"<integer of {self.digits} digits>"


class _NonFinite:
    """A ``NaN`` / ``Infinity`` / ``-Infinity`` literal (not JSON, but Python's json reads it)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class _Obj(dict):
    """A JSON object that remembers the keys it saw more than once (the last value wins in
    ``json``; which one LS meant is unknowable, so the record holding it is quarantined)."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Obj:
    obj = _Obj(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dups = []
        for k, _ in pairs:
            if k in seen and k not in dups:
                dups.append(k)
            seen.add(k)
        obj.duplicates = tuple(dups)
    return obj


def _structure(text: bytes) -> tuple[int, int]:
    """``(deepest nesting, top-level items)`` of JSON ``text``, brackets and commas inside
    strings ignored: what the limits need, known before the parser builds a single object.

    Vectorised (a regex blanks the strings, numpy counts), in chunks so memory stays small.
    Top-level items are the commas at depth 1, plus one for a non-empty array.
    """
    stripped = _JSON_STRING.sub(b'""', text)
    buf = np.frombuffer(stripped, dtype=np.uint8)
    deepest = depth = commas = 0
    step = 1 << 22
    for start in range(0, buf.size, step):
        chunk = buf[start : start + step]
        delta = (
            (chunk == ord("[")).astype(np.int8)
            + (chunk == ord("{"))
            - (chunk == ord("]"))
            - (chunk == ord("}"))
        )
        comma = chunk == ord(",")
        events = (delta != 0) | comma
        if not events.any():
            continue
        d = delta[events]
        running = np.cumsum(d, dtype=np.int64) + depth
        deepest = max(deepest, int(running.max(initial=depth)))
        commas += int(np.count_nonzero(comma[events] & (running == 1)))
        depth = int(running[-1])
    body = stripped.strip()
    items = commas + 1 if body.startswith(b"[") and body[1:].lstrip()[:1] != b"]" else 0
    return deepest, items


def _preview(value: Any, limit: int = 60) -> str:
    """A short, single-line, inert rendering of an untrusted value for a quarantine detail:
    control, format (RTL override, zero-width) and non-printable characters are escaped, long
    strings cut, containers summarised (never walked, so depth cannot hurt)."""
    if isinstance(value, str):
        shown = "".join(
            c if c.isprintable() else f"\\u{ord(c):04x}" for c in value[: limit + 1][:limit]
        )
        more = f"... ({len(value)} chars)" if len(value) > limit else ""
        return f"'{shown}'{more}"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else f"<integer of {len(str(value))} digits>"
    if isinstance(value, float | _Oversized | _NonFinite):
        return repr(value)
    if isinstance(value, dict):
        return f"<object of {len(value)} keys>"
    if isinstance(value, list):
        return f"<array of {len(value)} items>"
    return f"<{type(value).__name__}>"


def _type_name(value: Any) -> str:
    if isinstance(value, _Oversized | _NonFinite):
        return "number"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        type(None): "null",
        list: "array",
        _Obj: "object",
        dict: "object",
    }.get(type(value), type(value).__name__)


class _Bad(Exception):
    """A record's problem: its quarantine reason and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def _no_dups(obj: Any, where: str) -> None:
    if isinstance(obj, _Obj) and obj.duplicates:
        keys = ", ".join(_preview(k, 40) for k in obj.duplicates[:5])
        raise _Bad(DUPLICATE_KEY, f"{where} has duplicate keys: {keys}")


def _photo_id(data: Any, field: str = "data.photo_id") -> int:
    key = field.rsplit(".", 1)[-1]
    if key not in data:
        raise _Bad(MISSING_PHOTO_ID, f"{field} is missing")
    v = data[key]
    if v is None:
        raise _Bad(MISSING_PHOTO_ID, f"{field} is null")
    if isinstance(v, _Oversized):
        raise _Bad(PHOTO_ID_OUT_OF_RANGE, f"{field} is {v!r}, past int64")
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(
            PHOTO_ID_NOT_INT, f"{field} must be an integer, got {_type_name(v)} {_preview(v)}"
        )
    if not 0 <= v <= _INT64_MAX:
        raise _Bad(PHOTO_ID_OUT_OF_RANGE, f"{field} is {_preview(v)}, not in 0..2^63-1")
    return v


def _task_id(task: Mapping[str, Any], field: str = "id") -> int:
    v = task.get(field)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _INT64_MAX:
        raise _Bad(
            BAD_TASK_ID,
            f"task {field} must be a non-negative integer, got {_type_name(v)} {_preview(v)}",
        )
    return v


def _annotation_key(v: Any, field: str) -> str:
    """An LS annotation id (an int, or a string in some exports) as a safe id fragment."""
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _INT64_MAX:
        return str(v)
    if isinstance(v, str) and _ANNOTATION_ID.fullmatch(v):
        return v
    raise _Bad(
        BAD_ANNOTATION_ID,
        f"{field} must be a non-negative integer or a short "
        f"[A-Za-z0-9_.-] string, got {_type_name(v)} {_preview(v)}",
    )


def _safe_text(v: str, limit: int) -> bool:
    """Non-empty, at most ``limit`` chars, no whitespace, nothing non-printable (control,
    NUL, bidi overrides, zero-width, unassigned): what may go into an id column."""
    return (
        0 < len(v) <= limit
        and v.isprintable()
        and not any(c.isspace() for c in v)
        and unicodedata.is_normalized("NFC", v)
    )


def _annotator(v: Any, field: str, limits: ExportLimits) -> str:
    """``ls:<user id>``, or ``ls:<email>`` where LS gave only an email."""
    if isinstance(v, dict):
        _no_dups(v, field)
        if v.get("id") is not None:
            return _annotator(v["id"], f"{field}.id", limits)
        if v.get("email") is not None:
            return _annotator(v["email"], f"{field}.email", limits)
        raise _Bad(BAD_ANNOTATOR, f"{field} has neither id nor email")
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _INT64_MAX:
        return f"ls:{v}"
    if isinstance(v, str) and _safe_text(v, limits.max_string_chars):
        return f"ls:{v}"
    raise _Bad(
        BAD_ANNOTATOR,
        f"{field} must be a user id or a printable email without spaces "
        f"(at most {limits.max_string_chars} chars), got {_type_name(v)} "
        f"{_preview(v)}",
    )


def _timestamp(ann: Mapping[str, Any], limits: ExportLimits) -> dt.datetime:
    """When the label was last set: ``updated_at``, else ``created_at`` (UTC when naive, as
    LS writes UTC). A present but unreadable time is an error, never skipped for the other."""
    field = "updated_at" if ann.get("updated_at") is not None else "created_at"
    v = ann.get(field)
    if v is None:
        raise _Bad(BAD_TIMESTAMP, "annotation has neither updated_at nor created_at")
    if not isinstance(v, str) or len(v) > limits.max_string_chars:
        raise _Bad(
            BAD_TIMESTAMP, f"{field} must be an ISO-8601 string, got {_type_name(v)} {_preview(v)}"
        )
    try:
        ts = dt.datetime.fromisoformat(v)
    except ValueError:
        raise _Bad(BAD_TIMESTAMP, f"{field} is not an ISO-8601 time: {_preview(v)}") from None
    ts = ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)
    if not _EARLIEST <= ts < _LATEST:
        raise _Bad(BAD_TIMESTAMP, f"{field} {_preview(v)} is outside 2000..2099")
    return ts


def _label(choices: Any, field: str, labels: frozenset[str]) -> str:
    if isinstance(choices, str):
        choices = [choices]
    if not isinstance(choices, list):
        raise _Bad(BAD_RESULT, f"{field} must be an array of labels, got {_type_name(choices)}")
    if not choices:
        raise _Bad(NO_CHOICE, f"{field} is empty")
    if len(choices) > 1:
        shown = ", ".join(_preview(c, 30) for c in choices[:5])
        raise _Bad(MULTIPLE_CHOICES, f"{field} has {len(choices)} labels ({shown}); one expected")
    label = choices[0]
    if not isinstance(label, str):
        raise _Bad(
            LABEL_NOT_STRING,
            f"{field}[0] must be a string, got {_type_name(label)} {_preview(label)}",
        )
    if label not in labels:
        near = [x for x in labels if x.casefold() == label.strip().casefold()]
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise _Bad(
            LABEL_NOT_IN_LABEL_SET, f"{field}[0] {_preview(label)} is not in the label set{hint}"
        )
    return label


def _choice_of(result: Any, from_name: str, labels: frozenset[str], limits: ExportLimits) -> str:
    """The one label of the ``from_name`` Choices region of an annotation's ``result``; regions
    of other controls are not ours and are passed over."""
    if not isinstance(result, list):
        raise _Bad(BAD_RESULT, f"result must be an array, got {_type_name(result)}")
    if len(result) > limits.max_regions_per_annotation:
        raise _Bad(
            BAD_RESULT,
            f"result has {len(result)} regions, more than {limits.max_regions_per_annotation}",
        )
    ours = []
    others: list[str] = []
    for j, region in enumerate(result):
        if not isinstance(region, dict):
            raise _Bad(BAD_RESULT, f"result[{j}] must be an object, got {_type_name(region)}")
        _no_dups(region, f"result[{j}]")
        if region.get("from_name") == from_name:
            ours.append((j, region))
        elif len(others) < 3:
            others.append(_preview(region.get("from_name"), 30))
    if not ours:
        seen = f" (found from_name {', '.join(others)})" if others else ""
        raise _Bad(NO_CHOICE, f"result has no region from the {from_name!r} control{seen}")
    if len(ours) > 1:
        raise _Bad(
            MULTIPLE_CHOICES, f"result has {len(ours)} regions from {from_name!r}; one expected"
        )
    j, region = ours[0]
    if region.get("type") != "choices":
        raise _Bad(
            BAD_RESULT, f"result[{j}].type must be 'choices', got {_preview(region.get('type'))}"
        )
    value = region.get("value")
    if not isinstance(value, dict):
        raise _Bad(BAD_RESULT, f"result[{j}].value must be an object, got {_type_name(value)}")
    _no_dups(value, f"result[{j}].value")
    if "choices" not in value:
        raise _Bad(NO_CHOICE, f"result[{j}].value.choices is missing")
    return _label(value["choices"], f"result[{j}].value.choices", labels)


# --- parse_export ---------------------------------------------------------------------------


class _Collector:
    """The rows and quarantine rows of one file, plus the annotation ids already taken."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.rows: dict[str, list[Any]] = {c: [] for c in ANNOTATIONS_SCHEMA}
        self.quarantine: dict[str, list[Any]] = {c: [] for c in QUARANTINE_SCHEMA}
        self.ids: set[str] = set()

    def bad(self, task_index: int | None, reason: str, detail: str) -> None:
        q = self.quarantine
        q["object_key"].append(self.key)
        q["task_index"].append(task_index)
        q["reason"].append(reason)
        q["detail"].append(detail)

    def add(self, aid: str, photo_id: int, annotator: str, label: str, ts: dt.datetime) -> None:
        if aid in self.ids:
            raise _Bad(DUPLICATE_ANNOTATION_ID, f"annotation {aid} appears more than once")
        self.ids.add(aid)
        for c, v in zip(
            ("annotation_id", "photo_id", "annotator", "label", "annotated_at", "source"),
            (aid, photo_id, annotator, label, ts, SOURCE),
            strict=True,
        ):
            self.rows[c].append(v)

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        return (
            pl.DataFrame(self.rows, schema=ANNOTATIONS_SCHEMA),
            pl.DataFrame(self.quarantine, schema=QUARANTINE_SCHEMA),
        )


def _read_text(data: bytes, limits: ExportLimits) -> tuple[str | None, tuple[str, str] | None]:
    """The file as text, or its whole-file reason: checked cheapest first, and all before
    ``json`` sees a byte (size, compression, encoding, nesting, task count)."""
    if len(data) > limits.max_bytes:
        return None, (
            FILE_TOO_LARGE,
            f"{len(data)} bytes, more than the limit of {limits.max_bytes}",
        )
    for magic, name in _COMPRESSED_MAGIC.items():
        if data.startswith(magic):
            return None, (
                COMPRESSED_NOT_SUPPORTED,
                f"the file is {name}-compressed; land the plain JSON export instead",
            )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, (NOT_UTF8, f"not UTF-8 at byte {exc.start}: {exc.reason}")
    depth, items = _structure(data)
    if depth > limits.max_depth:
        return None, (
            TOO_DEEP,
            f"nested {depth} levels deep, more than the limit of {limits.max_depth}",
        )
    if items > limits.max_tasks:
        return None, (TOO_MANY_TASKS, f"{items} tasks, more than the limit of {limits.max_tasks}")
    return text, None


def _loads(text: str, limits: ExportLimits) -> Any:
    digits = limits.max_int_digits

    def parse_int(s: str) -> int | _Oversized:
        return int(s) if len(s.lstrip("-")) <= digits else _Oversized(s)

    return json.loads(
        text,
        parse_int=parse_int,
        parse_constant=_NonFinite,
        object_pairs_hook=_object_pairs,
    )


def parse_export(
    data: bytes,
    key: str,
    label_set: Sequence[str],
    *,
    limits: ExportLimits = DEFAULT_LIMITS,
    from_name: str = FROM_NAME,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse one Label Studio export (``JSON``, or ``JSON_MIN``) landed at object ``key``.

    Returns ``(annotations, quarantine)``: annotations in :data:`ANNOTATIONS_SCHEMA` (source
    ``labelstudio``, ``annotation_id`` ``ls:<task id>:<annotation id>``, ``annotator``
    ``ls:<user id or email>``), and one :data:`QUARANTINE_SCHEMA` row per bad file, task or
    annotation. ``from_name`` is the Choices control whose label is read; regions of other
    controls are ignored. A task without annotations yields nothing (it is not labelled yet).
    """
    labels = frozenset(_check_label_set(label_set))
    out = _Collector(key)
    text, problem = _read_text(data, limits)
    if text is not None:
        try:
            doc = _loads(text, limits)
        except RecursionError:  # pragma: no cover - the depth check comes first
            problem = (TOO_DEEP, "nested deeper than the parser allows")
        except ValueError as exc:  # JSONDecodeError included
            problem = (NOT_JSON, f"not JSON: {_preview(str(exc), 200)}")
        else:
            del text
            if not isinstance(doc, list):
                problem = (NOT_A_LIST, f"an LS export is an array of tasks, got {_type_name(doc)}")
            elif len(doc) > limits.max_tasks:  # pragma: no cover - counted before parsing
                problem = (
                    TOO_MANY_TASKS,
                    f"{len(doc)} tasks, more than the limit of {limits.max_tasks}",
                )
    if problem is not None:
        out.bad(None, *problem)
        return out.frames()
    for i, task in enumerate(doc):
        try:
            if not isinstance(task, dict):
                raise _Bad(TASK_NOT_OBJECT, f"task must be an object, got {_type_name(task)}")
            _no_dups(task, "task")
            if "data" in task or "annotations" in task:
                _parse_task(task, i, out, labels, limits, from_name)
            elif "annotation_id" in task or from_name in task:
                _parse_min_item(task, out, labels, limits, from_name)
            else:
                raise _Bad(
                    MISSING_DATA,
                    "task has no data (neither a JSON task with data and "
                    "annotations nor a JSON_MIN item)",
                )
        except _Bad as bad:
            out.bad(i, bad.reason, bad.detail)
    return out.frames()


def _parse_task(
    task: Mapping[str, Any],
    i: int,
    out: _Collector,
    labels: frozenset[str],
    limits: ExportLimits,
    from_name: str,
) -> None:
    """One task of the ``JSON`` export: task problems raise, annotation problems are
    quarantined one row each and the task's other annotations still count."""
    tid = _task_id(task)
    data = task.get("data")
    if not isinstance(data, dict):
        raise _Bad(MISSING_DATA, f"task {tid}: data must be an object, got {_type_name(data)}")
    _no_dups(data, f"task {tid} data")
    photo_id = _photo_id(data)
    anns = task.get("annotations", [])
    if not isinstance(anns, list):
        raise _Bad(
            ANNOTATIONS_NOT_LIST,
            f"task {tid}: annotations must be an array, got {_type_name(anns)}",
        )
    if len(anns) > limits.max_annotations_per_task:
        raise _Bad(
            TOO_MANY_ANNOTATIONS,
            f"task {tid}: {len(anns)} annotations, more than {limits.max_annotations_per_task}",
        )
    for k, ann in enumerate(anns):
        where = f"task {tid} annotations[{k}]"
        try:
            if not isinstance(ann, dict):
                raise _Bad(ANNOTATION_NOT_OBJECT, f"must be an object, got {_type_name(ann)}")
            _no_dups(ann, "annotation")
            aid = f"ls:{tid}:{_annotation_key(ann.get('id'), 'id')}"
            where = f"task {tid} annotation {aid}"
            cancelled = ann.get("was_cancelled", False)
            if cancelled is None:
                cancelled = False
            if not isinstance(cancelled, bool):
                raise _Bad(
                    BAD_WAS_CANCELLED,
                    f"was_cancelled must be a boolean, got {_type_name(cancelled)}",
                )
            if cancelled:
                raise _Bad(CANCELLED_ANNOTATION, "the annotator skipped the task (was_cancelled)")
            if "completed_by" not in ann:
                raise _Bad(BAD_ANNOTATOR, "completed_by is missing")
            annotator = _annotator(ann["completed_by"], "completed_by", limits)
            label = _choice_of(ann.get("result"), from_name, labels, limits)
            ts = _timestamp(ann, limits)
            out.add(aid, photo_id, annotator, label, ts)
        except _Bad as bad:
            out.bad(i, bad.reason, f"{where}: {bad.detail}")


def _parse_min_item(
    item: Mapping[str, Any],
    out: _Collector,
    labels: frozenset[str],
    limits: ExportLimits,
    from_name: str,
) -> None:
    """One item of the ``JSON_MIN`` export: a task's data fields and one annotation, flat,
    with the control's value under its name (a single choice as a plain string)."""
    tid = _task_id(item)
    photo_id = _photo_id(item, "photo_id")
    aid = f"ls:{tid}:{_annotation_key(item.get('annotation_id'), 'annotation_id')}"
    try:
        if "annotator" not in item:
            raise _Bad(BAD_ANNOTATOR, "annotator is missing")
        annotator = _annotator(item["annotator"], "annotator", limits)
        if from_name not in item:
            raise _Bad(NO_CHOICE, f"{from_name} is missing")
        value = item[from_name]
        if isinstance(value, dict):
            _no_dups(value, from_name)
            value = value.get("choices", [])
        label = _label(value, from_name, labels)
        ts = _timestamp(item, limits)
        out.add(aid, photo_id, annotator, label, ts)
    except _Bad as bad:
        raise _Bad(bad.reason, f"annotation {aid}: {bad.detail}") from None


# --- export_tasks and labeling_config -------------------------------------------------------


def _check_label_set(label_set: Sequence[str]) -> list[str]:
    """The label set as a list; a caller's mistake (a bare string, duplicates, a label LS
    could not show) is a ``ValueError``."""
    if isinstance(label_set, str | bytes):
        raise ValueError(f"the label set must be a sequence of labels, not {label_set!r}")
    labels = list(label_set)
    if not labels:
        raise ValueError("the label set is empty")
    if len(set(labels)) != len(labels):
        raise ValueError(f"the label set has duplicates: {labels}")
    for label in labels:
        if not isinstance(label, str) or not _safe_text(label.replace(" ", "_"), 100):
            raise ValueError(f"label {label!r} must be printable text of 1..100 chars")
    return labels


def _json_number(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def export_tasks(
    photos: pl.DataFrame,
    *,
    image_url: Callable[[str], str] | str,
    label_set: Sequence[str] | None = None,
    model_version: str = "image_classifier",
    prediction_col: str = "predicted_class",
    prediction_score_col: str = "confidence",
    reason_col: str = "reason",
    score_col: str = "score",
    from_name: str = FROM_NAME,
    to_name: str = TO_NAME,
) -> list[dict[str, Any]]:
    """LS tasks to import, one per row of ``photos`` (``photo_id``, ``object_key``), in order.

    ``image_url`` maps an object key to the URL LS loads (a string is a prefix). Where
    ``prediction_col`` holds a label (and, with ``label_set``, one in it) the task carries a
    prediction (score from ``prediction_score_col``), which LS shows as a pre-annotation.
    ``reason_col`` and ``score_col``, where present, go to ``meta`` (why it was selected).
    Raises ``ValueError`` for a photo without an object key: it cannot be shown.
    """
    for col in ("photo_id", "object_key"):
        if col not in photos.columns:
            raise ValueError(f"photos needs a {col!r} column")
    missing = photos.filter(pl.col("object_key").is_null())["photo_id"]
    if missing.len():
        raise ValueError(f"photos without an object_key cannot be shown: {missing.to_list()[:10]}")
    allowed = frozenset(_check_label_set(label_set)) if label_set is not None else None
    url = image_url if callable(image_url) else (lambda k, p=image_url: p + k)
    cols = photos.columns
    tasks = []
    for row in photos.iter_rows(named=True):
        task: dict[str, Any] = {
            "data": {to_name: url(row["object_key"]), "photo_id": int(row["photo_id"])}
        }
        meta = {}
        if reason_col in cols and row[reason_col] is not None:
            meta["reason"] = str(row[reason_col])
        if score_col in cols:
            meta["score"] = _json_number(row[score_col])
        if meta:
            task["meta"] = meta
        label = row.get(prediction_col) if prediction_col in cols else None
        if label is not None and (allowed is None or label in allowed):
            score = _json_number(row.get(prediction_score_col))
            prediction: dict[str, Any] = {
                "model_version": model_version,
                "result": [
                    {
                        "from_name": from_name,
                        "to_name": to_name,
                        "type": "choices",
                        "value": {"choices": [label]},
                    }
                ],
            }
            if score is not None:
                prediction["score"] = score
            task["predictions"] = [prediction]
        tasks.append(task)
    return tasks


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def labeling_config(
    label_set: Sequence[str],
    definitions: Mapping[str, str] | None = None,
    *,
    from_name: str = FROM_NAME,
    to_name: str = TO_NAME,
) -> str:
    """The LS labeling config: the image and one single-choice control with a ``Choice`` per
    label, in the rulebook's order, its definition as the hover ``hint`` annotators see.

    Built with ElementTree so labels and definitions are escaped; characters XML cannot hold
    at all are refused (``ValueError``), not dropped.
    """
    labels = _check_label_set(label_set)
    definitions = dict(definitions or {})
    unknown = sorted(set(definitions) - set(labels))
    if unknown:
        raise ValueError(f"definitions for labels not in the label set: {unknown}")
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=to_name, value=f"${to_name}")
    header = ET.SubElement(view, "Header")
    header.set("value", "What does the photo mainly show?")
    choices = ET.SubElement(
        view, "Choices", name=from_name, toName=to_name, choice="single", required="true"
    )
    for label in labels:
        choice = ET.SubElement(choices, "Choice", value=label)
        hint = definitions.get(label)
        if hint:
            if _XML_BAD.search(hint):
                raise ValueError(f"the definition of {label!r} has characters XML cannot hold")
            choice.set("hint", " ".join(hint.split()))
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


# --- select_for_labelling -------------------------------------------------------------------


def select_for_labelling(candidates: pl.DataFrame, n: int) -> pl.DataFrame:
    """The ``n`` photos most worth labelling next: ``photo_id``, ``reason``, ``score``.

    Per photo, uncertainty is ``(1 - confidence) / (1 + n_annotations)`` (no confidence counts
    as fully uncertain; each label already held makes one more worth less) and disagreement is
    ``1 - agreement`` (no agreement: none seen). ``score`` is the larger; ``reason`` is
    ``unlabelled`` for a photo with no annotations, else whichever term gave the score
    (``disagreement`` on a tie). So unlabelled, low-confidence photos and disputed ones come
    first; ties go to the lower photo_id, so the choice is the same on every run.

    Missing ``confidence`` / ``agreement`` / ``n_annotations`` columns count as all-null / 0.
    Raises ``ValueError`` for duplicate photo ids or values outside [0, 1].
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if "photo_id" not in candidates.columns:
        raise ValueError("candidates need a photo_id column")
    if candidates["photo_id"].null_count():
        raise ValueError("candidates have a null photo_id")
    if candidates["photo_id"].n_unique() != candidates.height:
        raise ValueError("candidates have duplicate photo ids")
    df = candidates.select(
        pl.col("photo_id").cast(pl.Int64),
        *(
            (pl.col(c).cast(pl.Float64) if c in candidates.columns else pl.lit(None, pl.Float64))
            .fill_nan(None)
            .alias(c)
            for c in ("confidence", "agreement")
        ),
        (
            pl.col("n_annotations").cast(pl.Int64).fill_null(0)
            if "n_annotations" in candidates.columns
            else pl.lit(0, pl.Int64)
        ).alias("n_annotations"),
    )
    for c in ("confidence", "agreement"):
        if df.filter((pl.col(c) < 0) | (pl.col(c) > 1)).height:
            raise ValueError(f"{c} must be within [0, 1]")
    if df.filter(pl.col("n_annotations") < 0).height:
        raise ValueError("n_annotations must be >= 0")
    uncertainty = (1 - pl.col("confidence").fill_null(0.0)) / (1 + pl.col("n_annotations"))
    disagreement = 1 - pl.col("agreement").fill_null(1.0)
    return (
        df.with_columns(u=uncertainty, d=disagreement)
        .with_columns(
            score=pl.max_horizontal("u", "d"),
            reason=pl.when(pl.col("n_annotations") == 0)
            .then(pl.lit("unlabelled"))
            .when(pl.col("d") >= pl.col("u"))
            .then(pl.lit("disagreement"))
            .otherwise(pl.lit("uncertain")),
        )
        .sort(["score", "photo_id"], descending=[True, False])
        .head(n)
        .select("photo_id", "reason", "score")
    )
