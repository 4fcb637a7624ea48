"""A world no generator made: real photographs, an OLTP database the test writes with plain SQL,
a few hundred hand-written events and a Label Studio export. ``mdp run`` must succeed end to
end on it, and the models must train with no hidden truth anywhere."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

skdata = pytest.importorskip("skimage.data")

# real photographs bundled with scikit-image, and what each shows (by the rulebook's labels)
PHOTOGRAPHS = {
    "astronaut": "portrait",
    "camera": "portrait",
    "chelsea": "pet",
    "cat": "pet",
    "coffee": "food",
    "brick": "city",
}
VARIANTS = 8  # crops and flips of each photograph
DAY0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def _rgb(name: str) -> np.ndarray:
    img = np.asarray(getattr(skdata, name)())
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img[..., :3].astype(np.uint8)


def _variant(img: np.ndarray, v: int) -> bytes:
    h, w = img.shape[:2]
    top, left = (v % 3) * h // 10, (v // 3) * w // 10
    crop = img[top : top + h * 8 // 10, left : left + w * 8 // 10]
    if v % 2:
        crop = crop[:, ::-1]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_world(data: Path) -> dict:
    """Write the world where the settings say things go: photos and logs to the object store's
    landing area, metadata to the OLTP database, the LS export to landing/annotations/."""
    lake = data / "lake"
    photos, truth = [], {}
    pid = 0
    for name, label in PHOTOGRAPHS.items():
        img = _rgb(name)
        for v in range(VARIANTS):
            pid += 1
            key = f"landing/photos/own-{pid:04d}.jpg"
            (lake / key).parent.mkdir(parents=True, exist_ok=True)
            (lake / key).write_bytes(_variant(img, v))
            photos.append((pid, 1 + pid % 48, DAY0 + dt.timedelta(minutes=20 * pid), key, name))
            truth[pid] = label

    # OLTP: only the columns the platform reads, written with plain SQL (no project code)
    con = sqlite3.connect(data / "oltp.sqlite")
    con.execute(
        "CREATE TABLE users (user_id INTEGER PRIMARY KEY, joined_at TIMESTAMP, "
        "follower_count INTEGER)"
    )
    con.execute(
        "CREATE TABLE photos (photo_id INTEGER PRIMARY KEY, user_id INTEGER, uploaded_at "
        "TIMESTAMP, caption TEXT, object_key TEXT)"
    )
    con.executemany(
        "INSERT INTO users VALUES (?, ?, ?)",
        [(u, "2025-06-01 00:00:00", 10 * u) for u in range(1, 49)],
    )
    con.executemany(
        "INSERT INTO photos VALUES (?, ?, ?, ?, ?)",
        [
            (p, u, t.strftime("%Y-%m-%d %H:%M:%S"), f"my {name} photo", k)
            for p, u, t, k, name in photos
        ],
    )
    con.commit()
    con.close()

    # events: every photo is viewed; every other one collects likes, comments and shares
    rng = np.random.default_rng(5)
    lines: dict[str, list[str]] = {}
    n = 0
    for p, _u, up, _k, _name in photos:
        popular = p % 2 == 0
        kinds = ["view"] * 4 + (["like"] * 5 + ["comment", "share"] if popular else ["like"])
        for i, kind in enumerate(kinds):
            n += 1
            # one late view a day and a half on, so every photo is old enough to be judged
            late = i == 0
            t = up + dt.timedelta(minutes=36 * 60 if late else int(rng.integers(5, 20 * 60)))
            ev = {
                "event_id": f"ev-{n:06d}",
                "event_type": kind,
                "user_id": int(rng.integers(1, 49)),
                "photo_id": p,
                "ts": _ts(t),
                "client": "web",
            }
            if kind == "view":
                ev["dwell_ms"] = int(rng.integers(300, 9000))
            lines.setdefault(t.date().isoformat(), []).append(json.dumps(ev))
    for day, rows in lines.items():
        f = lake / f"landing/events/date={day}/part-00000.jsonl.gz"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))

    # a Label Studio export: two annotators labelled most photos; one careless answer
    tasks = []
    disputed = set()
    for i, (p, *_rest) in enumerate(photos):
        if p % 6 == 0:
            continue  # not yet labelled
        anns = []
        if i % 9 == 0:
            disputed.add(p)
        for j, who in enumerate((3, 7)):
            label = truth[p] if not (who == 7 and i % 9 == 0) else "sunset"
            anns.append(
                {
                    "id": 1000 + 2 * i + j,
                    "completed_by": who,
                    "result": [
                        {
                            "from_name": "content",
                            "to_name": "image",
                            "type": "choices",
                            "value": {"choices": [label]},
                        }
                    ],
                    "created_at": _ts(DAY0 + dt.timedelta(days=1, minutes=i)),
                    "was_cancelled": False,
                }
            )
        data = {"photo_id": p, "image": f"/data/{p}"}
        tasks.append({"id": 500 + i, "data": data, "annotations": anns})
    exports = {
        "landing/annotations/project-1-export.json": json.dumps(tasks),
        # and a broken upload beside it: quarantined, never a stopped run
        "landing/annotations/half-uploaded.json": json.dumps(tasks)[:500],
    }
    return {
        "photos": len(photos), "events": n, "labelled": len(tasks), "truth": truth,
        "exports": exports, "disputed": disputed,
    }  # fmt: skip


def land_exports(data: Path, exports: dict[str, str]) -> None:
    for key, text in exports.items():
        path = data / "lake" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_mdp_run_succeeds_on_a_world_no_generator_made(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    world = build_world(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDP_", "AWS_", "LAKEFS_"))}
    env |= {
        "MDP_DATA_DIR": str(data),
        "DAGSTER_HOME": str(data / "dagster_home"),
        "MDP_LABEL_MIN_ENGAGEMENT": "4",
    }

    def mdp_json(*args: str) -> Any:
        res = subprocess.run(
            [sys.executable, "-m", "my_data_platform.cli", *args, "--format", "json"],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return json.loads(res.stdout)

    def sql(query: str) -> list:
        return mdp_json("sql", query)

    def mdp_run() -> str:
        run = subprocess.run(
            [sys.executable, "-m", "my_data_platform.cli", "run"],
            env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-4000:]
        return out

    # --- no annotations at all: no table, no export. The run succeeds, with a warning ----------
    out = mdp_run()
    assert "no annotations: image content labels are empty" in out
    assert sql("SELECT count(*) AS n FROM labels.image_content")[0]["n"] == 0
    assert sql(
        "SELECT count(*) AS n FROM features.image_predictions WHERE predicted_class IS NULL"
    ) == [{"n": world["photos"]}]
    first_model = mdp_json("model", "show")
    assert first_model["labels"]["image_content"]["labels_used"] == 0

    # --- the team's Label Studio export lands ----------------------------------------------
    land_exports(data, world["exports"])
    mdp_run()
    assert not (data / "ground_truth").exists()

    assert sql("SELECT count(*) AS n FROM warehouse.photos")[0]["n"] == world["photos"]
    assert sql("SELECT count(*) AS n FROM warehouse.events")[0]["n"] == world["events"]
    # the export's annotations arrived; the half-uploaded file is one quarantine row
    ann = sql("SELECT source, count(*) AS n FROM warehouse.annotations GROUP BY source")
    assert ann == [{"source": "labelstudio", "n": 2 * world["labelled"]}]
    q = sql("SELECT object_key, reason FROM warehouse.annotations_quarantine")
    assert [r["object_key"] for r in q] == ["landing/annotations/half-uploaded.json"]
    # consensus labels match what the photographs show (the careless answers lost)
    labels = pl.DataFrame(sql("SELECT photo_id, label FROM labels.image_content"))
    assert labels.height == world["labelled"]
    right = sum(world["truth"][p] == lab for p, lab in labels.iter_rows())
    assert right == labels.height
    # the image classifier trained on those labels, the popularity model on the dataset
    preds = sql(
        "SELECT count(*) AS n FROM features.image_predictions WHERE predicted_class IS NOT NULL"
    )
    assert preds[0]["n"] == world["photos"]
    manifest = mdp_json("model", "show")
    assert manifest.get("oracle") is None  # no hidden truth: no oracle
    assert manifest["labels"]["image_content"]["labels_used"] == world["labelled"]

    # --- the data flywheel: export what to label next, annotate, import, rerun ---------------
    tasks_file = tmp_path / "tasks.json"
    subprocess.run(
        [sys.executable, "-m", "my_data_platform.cli", "labels", "export", "--out",
         str(tasks_file), "--limit", str(world["photos"])],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    tasks = json.loads(tasks_file.read_text())
    reasons = {t["data"]["photo_id"]: t["meta"]["reason"] for t in tasks}
    unlabelled = set(world["truth"]) - set(labels["photo_id"])
    assert len(unlabelled) == 8
    # every photo, ranked: disputed, unlabelled and uncertain ones, each with its reason
    assert reasons == {
        p: "disagreement" if p in world["disputed"] else "unlabelled" if p in unlabelled
        else "uncertain"
        for p in world["truth"]
    }  # fmt: skip
    scores = [t["meta"]["score"] for t in tasks]
    assert scores == sorted(scores, reverse=True)
    # the classifier's guess rides along as a pre-annotation
    assert all(t["predictions"][0]["result"][0]["value"]["choices"] for t in tasks)
    # simulated annotators answer in Label Studio, which exports the tasks with annotations
    for i, t in enumerate(tasks):
        t["id"] = 9000 + i
        t["annotations"] = [
            {
                "id": 90000 + 10 * i + who,
                "completed_by": who,
                "result": [
                    {
                        "from_name": "content",
                        "to_name": "image",
                        "type": "choices",
                        "value": {"choices": [world["truth"][t["data"]["photo_id"]]]},
                    }
                ],
                "created_at": _ts(DAY0 + dt.timedelta(days=3, minutes=i)),
                "was_cancelled": False,
            }
            for who in (3, 7)
        ]
    (data / "lake/landing/annotations/project-1-round-2.json").write_text(json.dumps(tasks))
    commits_before = mdp_json("datasets", "log")
    mdp_run()
    assert sql("SELECT count(*) AS n FROM labels.image_content")[0]["n"] == world["photos"]
    commits_after = mdp_json("datasets", "log")
    assert len(commits_after) == len(commits_before) + 1  # a new dataset version
    models = mdp_json("model", "list")
    assert [m["image_labels_used"] for m in models] == [0, world["labelled"], world["photos"]]
    assert len({m["dataset_commit"] for m in models}) == 3
    assert len({m["image_labels_sha256"] for m in models}) == 3
    assert all(m["test_roc_auc"] is not None for m in models)
