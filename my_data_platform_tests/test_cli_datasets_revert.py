"""``mdp datasets revert``: main rolls back, and Dagster's lineage points training at it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from my_data_platform.cli import _common, app
from my_data_platform.core.versioning import VersionStore
from my_data_platform.core.versioning.revert import tree
from my_data_platform.defs.datasets.lineage import KEY, dataset_commit


def _publish(vs: VersionStore, name: str, objects: dict[str, bytes], drop: tuple = ()) -> str:
    """A dataset version the way the asset publishes one: branch, stage, commit, merge."""
    vs.create_branch(name, "main")
    if objects:
        vs.put_objects(name, objects)
    for path in drop:
        vs.delete_object(name, path)
    cid = vs.commit(name, f"publish {name}", {"dagster_run_id": name}).id
    vs.merge(name, "main")
    vs.delete_branch(name)
    return cid


@pytest.fixture
def two_versions(data_env: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.setenv("USER", "tester")
    vs = _common.version_store()
    v1 = _publish(vs, "v1", {"examples.parquet": b"PAR1 good", "labels.json": b'{"n": 1}'})
    v2 = _publish(
        vs, "v2", {"examples.parquet": b"PAR1 bad labels", "x.txt": b"x"}, ("labels.json",)
    )
    return v1, v2


def _invoke(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_revert_moves_main_and_training_lineage(two_versions: tuple[str, str]) -> None:
    from my_data_platform.runner import get_instance

    v1, v2 = two_versions
    code, out, err = _invoke("datasets", "revert", v1, "--reason", "bad labels")
    assert code == 0, out + err
    vs = _common.version_store()
    head = vs.resolve_ref("main")
    assert head not in (v1, v2)
    assert f"new head:      {head}" in out
    assert f"reverted_to:   {v1}" in out and f"reverted_from: {v2}" in out
    assert tree(vs, head) == tree(vs, v1)
    commit = vs.get_commit(head)
    assert commit.metadata["reason"] == "bad labels"
    assert commit.metadata["reverted_by"] == "tester"
    # the same DAGSTER_HOME instance: training's default now reads the reverted commit
    instance = get_instance()
    assert dataset_commit(instance, vs, None) == head
    mat = instance.get_latest_materialization_event(KEY).asset_materialization
    md = {k: v.value for k, v in mat.metadata.items()}
    assert md["reverted_to"] == v1 and md["reverted_from"] == v2 and md["reason"] == "bad labels"
    # history is kept: v2 is still in main's log and readable
    assert {v1, v2} <= {c.id for c in vs.log("main")}
    assert vs.get_object(v2, "x.txt") == b"x"


def test_revert_json_and_by(two_versions: tuple[str, str]) -> None:
    v1, _ = two_versions
    code, out, err = _invoke(
        "datasets", "revert", v1, "--reason", "r", "--by", "ops-bot", "--format", "json"
    )
    assert code == 0, out + err
    info = json.loads(out)
    assert info["commit"]["metadata"]["reverted_by"] == "ops-bot"
    assert info["commit"]["id"] == _common.version_store().resolve_ref("main")


def test_revert_errors_are_one_line(two_versions: tuple[str, str]) -> None:
    from my_data_platform.runner import get_instance

    v1, v2 = two_versions
    head = _common.version_store().resolve_ref("main")
    code, _, err = _invoke("datasets", "revert", v1, "--reason", "  ")
    assert code == 2 and "--reason must not be empty" in err
    code, _, err = _invoke("datasets", "revert", "no-such-tag", "--reason", "x")
    assert code == 2 and "no-such-tag" in err and "Traceback" not in err
    code, _, err = _invoke("datasets", "revert", v2, "--reason", "x")  # main already is v2
    assert code == 2 and "nothing to revert" in err
    assert _common.version_store().resolve_ref("main") == head
    # nothing was recorded in Dagster for the refused rollbacks
    assert get_instance().get_latest_materialization_event(KEY) is None


def test_show_and_diff_name_an_unreadable_dataset_in_one_line(data_env) -> None:
    """A version whose examples are not Parquet (or lack a column) is an error naming the
    object and the ref, never a traceback."""
    from typer.testing import CliRunner

    from my_data_platform.cli._common import version_store
    from my_data_platform.cli.main import app

    vs = version_store()
    vs.create_repository()
    vs.create_branch("bad", "main")
    vs.put_object("bad", "examples.parquet", b"not parquet at all")
    vs.commit("bad", "a broken upload")
    runner = CliRunner()
    for args in (["datasets", "show", "bad"], ["datasets", "diff", "main", "bad"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert "examples.parquet at 'bad' is not a readable dataset" in res.output
        assert "Traceback" not in res.output
