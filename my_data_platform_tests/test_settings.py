"""Settings: the one module that reads the environment, its defaults, errors and secrets."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import dagster as dg
import pytest

import my_data_platform
from my_data_platform import settings as settings_module
from my_data_platform.settings import (
    SECRET_VARS,
    SettingsError,
    configure_fiftyone,
    get_settings,
    reset_settings,
)

PACKAGE = Path(my_data_platform.__file__).parent
ENV_NAMES = {"environ", "getenv", "putenv", "unsetenv", "environb", "getenvb"}


def environment_uses(source: str) -> list[str]:
    """Every place ``source`` reads or writes the process environment through ``os``."""
    tree = ast.parse(source)
    os_names = {"os"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names |= {a.asname or a.name for a in node.names if a.name == "os"}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"line {node.lineno}: from os import {a.name}" for a in node.names
                      if a.name in ENV_NAMES]  # fmt: skip
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ENV_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_checker_finds_every_kind_of_read_and_write() -> None:
    source = (
        "import os\nimport os as o\nfrom os import getenv\n"
        "a = os.getenv('A')\nb = os.environ.get('B')\nc = o.environ['C']\n"
        "os.environ.setdefault('D', '1')\nos.environ['E'] = '1'\nos.getpid()\n"
    )
    assert len(environment_uses(source)) == 6
    assert environment_uses("import os\nos.getpid()\nos.replace('a', 'b')\n") == []


def test_only_settings_reads_the_environment() -> None:
    offenders = {
        str(path.relative_to(PACKAGE.parent)): uses
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != Path(settings_module.__file__)
        and (uses := environment_uses(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "only my_data_platform/settings.py may touch os.environ"


ASSET_DECORATOR = re.compile(r"\b(asset|multi_asset|graph_asset|asset_check|multi_asset_check)\b")


def test_asset_bodies_take_configuration_from_resources_not_settings() -> None:
    """An asset that called get_settings() would hide its configuration from the Launchpad."""
    offenders = []
    for path in sorted((PACKAGE / "defs").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef) or not any(
                ASSET_DECORATOR.search(ast.unparse(d)) for d in node.decorator_list
            ):
                continue
            if any(
                isinstance(n, ast.Name | ast.Attribute | ast.alias)
                and "get_settings" in {getattr(n, "id", None), getattr(n, "attr", None),
                                       getattr(n, "name", None)}
                for n in ast.walk(node)
            ):  # fmt: skip
                offenders.append(f"{path.relative_to(PACKAGE.parent)}: {node.name}")
    assert offenders == []


def test_defaults(data_env: Path) -> None:
    s = get_settings()
    assert s.data_dir == data_env.resolve()
    assert s.object_store == "local"
    assert s.oltp_url == f"sqlite:///{data_env.resolve() / 'oltp.sqlite'}"
    assert s.warehouse_catalog == f"sqlite:{data_env.resolve() / 'warehouse' / 'catalog.sqlite'}"
    assert s.versioning == "local"
    assert s.lakefs_repository == "datasets"
    assert s.lakefs_endpoint is None and s.lakefs_storage_namespace is None
    assert s.fiftyone_database_name is None and not s.fiftyone_database_uri_is_set
    assert s.schedule_timezone == "UTC"
    assert s.nightly_cron == "0 2 * * *"
    assert s.mongod_debug is False


def test_values_are_read(data_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "MDP_VERSIONING": " LakeFS ",
        "LAKEFS_ENDPOINT": "https://lakefs.internal",
        "MDP_LAKEFS_REPOSITORY": "ds",
        "MDP_LAKEFS_STORAGE_NAMESPACE": "s3://b/ns",
        "MDP_FIFTYONE_DATABASE_NAME": "fo",
        "MDP_FIFTYONE_DATABASE_URI": "mongodb://u:p@h/",
        "MDP_SCHEDULE_TIMEZONE": "Europe/Paris",
        "MDP_NIGHTLY_CRON": "30 3 * * 1",
        "MDP_MONGOD_DEBUG": "1",
    }.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    s = get_settings()
    assert (s.versioning, s.lakefs_endpoint, s.lakefs_repository) == (
        "lakefs",
        "https://lakefs.internal",
        "ds",
    )
    assert s.lakefs_storage_namespace == "s3://b/ns"
    assert s.fiftyone_database_name == "fo" and s.fiftyone_database_uri_is_set
    assert (s.schedule_timezone, s.nightly_cron, s.mongod_debug) == (
        "Europe/Paris",
        "30 3 * * 1",
        True,
    )


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("false", False), ("yes", True)])
def test_mongod_debug(
    data_env: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("MDP_MONGOD_DEBUG", value)
    reset_settings()
    assert get_settings().mongod_debug is expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MDP_OBJECT_STORE", "ftp"),
        ("MDP_VERSIONING", "git"),
        ("MDP_FEATURE_ENGINE", "tpu"),
        ("MDP_SCHEDULE_TIMEZONE", "Mars/Olympus"),
        ("MDP_NIGHTLY_CRON", "every night"),
        ("MDP_LABEL_WINDOW_HOURS", "1.5"),
        ("MDP_PREDICTION_DELAY_HOURS", "-1"),
        ("MDP_WAREHOUSE_CATALOG", "mysql:db"),
    ],
)
def test_a_bad_value_names_its_variable(
    data_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    reset_settings()
    with pytest.raises(SettingsError, match=name):
        get_settings()


def test_secret_is_an_env_var_only_when_set(
    data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SECRET_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MDP_OLTP_URL", "postgresql://app:hunter2@db/photos")
    monkeypatch.setenv("MDP_ALERT_WEBHOOK_URL", "   ")  # blank counts as unset
    reset_settings()
    s = get_settings()
    assert s.secrets_set == frozenset({"MDP_OLTP_URL"})
    url = s.secret("MDP_OLTP_URL", "sqlite:///default")
    assert isinstance(url, dg.EnvVar) and url.env_var_name == "MDP_OLTP_URL"
    assert "hunter2" not in repr(url)
    assert s.oltp_url == "postgresql://app:hunter2@db/photos"  # the CLI still gets the value
    assert s.secret("MDP_WAREHOUSE_CATALOG", s.warehouse_catalog) == s.warehouse_catalog
    assert s.secret("MDP_ALERT_WEBHOOK_URL") is None
    with pytest.raises(SettingsError, match="MDP_DATA_DIR"):
        s.secret("MDP_DATA_DIR")


def test_configure_fiftyone_writes_its_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in ("FIFTYONE_DATABASE_URI", "FIFTYONE_DATABASE_NAME", "FIFTYONE_DATABASE_VALIDATION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FIFTYONE_PRIVATE_DATABASE_PORT", "27017")
    configure_fiftyone("mongodb://127.0.0.1:1/", "fo", validate=True)
    assert os.environ["FIFTYONE_DATABASE_URI"] == "mongodb://127.0.0.1:1/"
    assert os.environ["FIFTYONE_DATABASE_NAME"] == "fo"
    assert os.environ["FIFTYONE_DO_NOT_TRACK"] == "true"
    assert "FIFTYONE_DATABASE_VALIDATION" not in os.environ
    assert "FIFTYONE_PRIVATE_DATABASE_PORT" not in os.environ
    configure_fiftyone("mongodb://127.0.0.1:1/", "fo", validate=False)
    assert os.environ["FIFTYONE_DATABASE_VALIDATION"] == "false"


def test_media_cache_dir_moves_fiftyone_media(
    data_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from my_data_platform.defs.exploration.resources import fiftyone_resource_from_settings

    assert fiftyone_resource_from_settings().media_path() == data_env / "fiftyone" / "media"
    monkeypatch.setenv("MDP_MEDIA_CACHE_DIR", str(tmp_path / "shared-cache"))
    reset_settings()
    assert get_settings().fiftyone_media_cache == tmp_path / "shared-cache"
    assert fiftyone_resource_from_settings().media_path() == tmp_path / "shared-cache"
