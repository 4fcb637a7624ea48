"""``mdp labels export``, run as a real process on a small hand-made data dir (an OLTP photos
table and, where a test wants one, the candidates feature table): the tasks and config it
writes, what it refuses, and a round trip through a simulated Label Studio export."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest

from my_data_platform.core.image_classes import IMAGE_CLASSES
from my_data_platform.core.labelstudio import parse_export
from my_data_platform_tests.test_cli import mdp

pytestmark = pytest.mark.slow  # runs `mdp` in subprocesses


def make_data_dir(tmp_path: Path, *, candidates: pl.DataFrame | None = None) -> dict[str, str]:
    """Eight OLTP photos (photo 8 without an image) and, optionally, the candidates table."""
    data = tmp_path / "data"
    (data / "lake").mkdir(parents=True)
    with sqlite3.connect(data / "oltp.sqlite") as conn:
        conn.execute(
            "CREATE TABLE photos (photo_id INTEGER PRIMARY KEY, user_id INTEGER, object_key TEXT)"
        )
        conn.executemany(
            "INSERT INTO photos VALUES (?, 1, ?)",
            [(i, f"photos/{i:04d}.jpg" if i != 8 else None) for i in range(1, 9)],
        )
    if candidates is not None:
        path = data / "lake" / "lake" / "features" / "image_content_candidates.parquet"
        path.parent.mkdir(parents=True)
        candidates.write_parquet(path)
    return {"MDP_DATA_DIR": str(data), "DAGSTER_HOME": str(data / "dagster_home")}


CANDIDATES = pl.DataFrame(
    {
        "photo_id": [1, 2, 3, 4, 5, 6, 8],
        "predicted_class": ["beach", "sunset", "food", "pet", "city", "beach", "pet"],
        "confidence": [0.97, 0.35, 0.90, 0.50, None, 0.99, 0.10],
        "agreement": [None, None, 0.40, 1.0, None, 1.0, None],
        "n_annotations": [0, 0, 3, 1, 0, 4, 0],
    }
)


def test_export_writes_ranked_tasks_and_the_config(tmp_path: Path) -> None:
    env = make_data_dir(tmp_path, candidates=CANDIDATES)
    out = tmp_path / "ls" / "tasks.json"
    res = mdp("labels", "export", "--out", str(out), "--limit", "4",
              "--image-prefix", "https://img.example/", env=env)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "wrote 4 task(s)" in res.stdout
    assert "1 candidate photo(s) have no image" in res.stderr and ": 8" in res.stderr
    tasks = json.loads(out.read_text())
    # photo 5: unlabelled, no confidence; 2: unlabelled, 0.35; 3: disputed (0.6); 4: uncertain
    assert [t["data"]["photo_id"] for t in tasks] == [5, 2, 3, 4]
    assert [t["meta"]["reason"] for t in tasks] == [
        "unlabelled", "unlabelled", "disagreement", "uncertain",
    ]  # fmt: skip
    assert tasks[1]["data"]["image"] == "https://img.example/photos/0002.jpg"
    assert tasks[1]["predictions"][0]["result"][0]["value"] == {"choices": ["sunset"]}
    assert tasks[1]["predictions"][0]["score"] == pytest.approx(0.35)
    assert "score" not in tasks[0]["predictions"][0]  # null confidence: no score
    config = ET.parse(tmp_path / "ls" / "tasks.config.xml").getroot()
    assert [c.attrib["value"] for c in config.iter("Choice")] == list(IMAGE_CLASSES)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp-")]

    # Round trip: annotate in "LS" (ids assigned, annotations in the export format), parse.
    for tid, t in enumerate(tasks, start=1):
        t["id"] = tid
        t["annotations"] = [
            {
                "id": 500 + tid,
                "completed_by": {"id": 3, "email": "ann@example.org"},
                "result": [{"type": "choices", "from_name": "content", "to_name": "image",
                            "value": {"choices": [IMAGE_CLASSES[tid]]}}],
                "was_cancelled": False,
                "created_at": "2026-12-05T09:00:00Z",
                "updated_at": "2026-12-05T09:01:00Z",
            }
        ]  # fmt: skip
    rows, quarantine = parse_export(json.dumps(tasks).encode(), "landing/x.json", IMAGE_CLASSES)
    assert quarantine.height == 0
    assert rows.select("annotation_id", "photo_id", "label").rows() == [
        ("ls:1:501", 5, "beach"),
        ("ls:2:502", 2, "food"),
        ("ls:3:503", 3, "pet"),
        ("ls:4:504", 4, "city"),
    ]


def test_export_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    env = make_data_dir(tmp_path, candidates=CANDIDATES)
    out = tmp_path / "tasks.json"
    out.write_text("keep me")
    res = mdp("labels", "export", "--out", str(out), env=env)
    assert res.returncode == 2 and "--force" in res.stderr and str(out) in res.stderr
    assert "Traceback" not in res.stderr
    assert out.read_text() == "keep me"
    assert not (tmp_path / "tasks.config.xml").exists()
    config = tmp_path / "my.xml"
    config.write_text("keep me too")
    res = mdp("labels", "export", "--out", str(tmp_path / "new.json"), "--config", str(config),
              env=env)  # fmt: skip
    assert res.returncode == 2 and str(config) in res.stderr.replace("\n", "")
    assert not (tmp_path / "new.json").exists()
    res = mdp("labels", "export", "--out", str(out), "--limit", "2", "--force", env=env)
    assert res.returncode == 0, res.stderr
    assert len(json.loads(out.read_text())) == 2


def test_without_candidates_every_photo_with_an_image_is_unlabelled(tmp_path: Path) -> None:
    env = make_data_dir(tmp_path)
    out = tmp_path / "tasks.json"
    res = mdp("labels", "export", "--out", str(out), "--limit", "3", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    tasks = json.loads(out.read_text())
    assert [t["data"]["photo_id"] for t in tasks] == [1, 2, 3]  # ties: lowest photo_id first
    assert {t["meta"]["reason"] for t in tasks} == {"unlabelled"}
    assert all("predictions" not in t for t in tasks)
    lake = Path(env["MDP_DATA_DIR"]) / "lake"
    assert tasks[0]["data"]["image"] == str(lake / "photos" / "0001.jpg")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "csv"], "--format must be json"),
        (["--config", "{out}"], "same file"),
    ],
)
def test_export_bad_options_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    env = make_data_dir(tmp_path)
    out = tmp_path / "tasks.json"
    res = mdp("labels", "export", "--out", str(out), *[a.format(out=out) for a in args], env=env)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()


def test_export_without_a_data_dir(tmp_path: Path) -> None:
    env = {"MDP_DATA_DIR": str(tmp_path / "nope"), "DAGSTER_HOME": str(tmp_path / "dh")}
    res = mdp("labels", "export", "--out", str(tmp_path / "t.json"), env=env)
    assert res.returncode == 2 and "mdp seed" in res.stderr
    assert not (tmp_path / "t.json").exists()


def test_inconsistent_candidates_are_a_clear_error(tmp_path: Path) -> None:
    bad = CANDIDATES.with_columns(pl.lit(1.5).alias("confidence"))
    env = make_data_dir(tmp_path, candidates=bad)
    res = mdp("labels", "export", "--out", str(tmp_path / "t.json"), env=env)
    assert res.returncode == 2 and "confidence must be within [0, 1]" in res.stderr
    assert "Traceback" not in res.stderr


def test_without_candidates_the_classifier_predictions_rank_the_photos(tmp_path: Path) -> None:
    env = make_data_dir(tmp_path)
    preds = pl.DataFrame(
        {
            "photo_id": [1, 2, 3, 4],
            "predicted_class": ["beach", "pet", None, "city"],
            "confidence": [0.9, 0.4, None, 0.6],
        }
    )
    path = Path(env["MDP_DATA_DIR"]) / "lake" / "lake" / "features" / "image_predictions.parquet"
    path.parent.mkdir(parents=True)
    preds.write_parquet(path)
    out = tmp_path / "tasks.json"
    res = mdp("labels", "export", "--out", str(out), "--limit", "5", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    tasks = json.loads(out.read_text())
    # no prediction (3, 5, 6, 7) counts as fully uncertain, then 2 (0.4), then 4 (0.6)
    assert [t["data"]["photo_id"] for t in tasks] == [3, 5, 6, 7, 2]
    assert tasks[4]["predictions"][0]["result"][0]["value"] == {"choices": ["pet"]}
    assert all("predictions" not in t for t in tasks[:4])
