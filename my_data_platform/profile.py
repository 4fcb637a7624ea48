"""The scale-out profile's load-time checks (docs/scale-out.md).

Settings check each variable on its own; this module checks how they combine, when the
definitions load (``definitions.defs``) and before ``mdp run`` starts anything, so a deployment
that would lose or split data fails at once, with a message naming the variables, instead of in
the middle of a run on a worker host.

Rules:

* a DuckLake catalog on PostgreSQL with its data files in a local folder: other hosts share the
  catalog but cannot read the files;
* a remote executor (celery: steps run on worker hosts) with any store only this host can
  reach: a SQLite or DuckDB-file catalog (its single writer lock is a flock on this host's
  disk), the bundled mongod, the local object store, local dataset versions, a SQLite OLTP
  database or SQLite Dagster storage;
* the production profile with any of those file-backed stores, whatever the executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from my_data_platform.defs.warehouse.location import warehouse_data_path
from my_data_platform.settings import Settings, SettingsError

InstanceStorage = Literal["postgres", "sqlite", "other"]


@dataclass(frozen=True)
class FileBackedStore:
    """A store only this host can reach, and the variable setting that moves it to a server."""

    variable: str
    what: str
    fix: str


def instance_storage(s: Settings) -> InstanceStorage:
    """Where the Dagster instance under ``DAGSTER_HOME`` keeps runs, events and schedules.

    A storage block the operator wrote in ``$DAGSTER_HOME/dagster.yaml`` wins (the runner never
    replaces it); otherwise ``MDP_DAGSTER_POSTGRES_URL`` makes it PostgreSQL, else SQLite files
    under ``DAGSTER_HOME``.
    """
    configured = _configured_storage(s.dagster_home / "dagster.yaml")
    if configured is not None:
        return configured
    return "postgres" if s.dagster_postgres_url_is_set else "sqlite"


def _configured_storage(path: Path) -> InstanceStorage | None:
    import yaml

    if not path.exists():
        return None
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SettingsError(f"DAGSTER_HOME: {path} is not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        return None
    storage = config.get("storage")
    if isinstance(storage, dict) and storage:
        kind = next(iter(storage))
        return "postgres" if kind == "postgres" else "sqlite" if kind == "sqlite" else "other"
    modules = [
        str(block.get("module", "")) + "." + str(block.get("class", ""))
        for key in ("run_storage", "event_log_storage", "schedule_storage")
        if isinstance(block := config.get(key), dict)
    ]
    if not modules:
        return None
    if any("sqlite" in m.lower() for m in modules):
        return "sqlite"
    return "postgres" if all("postgres" in m.lower() for m in modules) else "other"


def _is_local_path(path: str) -> bool:
    """A folder on this host: a plain path or ``file://`` (``s3://``, ``gs://``... are not)."""
    scheme, sep, _ = path.partition("://")
    return not sep or scheme.lower() == "file"


def file_backed_stores(s: Settings) -> list[FileBackedStore]:
    """Every store of these settings that lives in a file or folder on this host."""
    out: list[FileBackedStore] = []
    if s.object_store == "local":
        out.append(
            FileBackedStore(
                "MDP_OBJECT_STORE",
                f"the object store is a local folder ({s.lake_root})",
                "MDP_OBJECT_STORE=s3 with MDP_S3_BUCKET",
            )
        )
    if s.warehouse_catalog.startswith(("sqlite:", "duckdb:")):
        kind = "SQLite" if s.warehouse_catalog.startswith("sqlite:") else "DuckDB"
        out.append(
            FileBackedStore(
                "MDP_WAREHOUSE_CATALOG",
                f"the DuckLake catalog is a {kind} file ({s.warehouse_catalog.partition(':')[2]}),"
                " whose single writer lock is a flock on this host's disk",
                "MDP_WAREHOUSE_CATALOG=postgres:<libpq connection string>",
            )
        )
    data_path = warehouse_data_path(s)
    if _is_local_path(data_path) and s.object_store == "s3":  # a local store is reported above
        out.append(
            FileBackedStore(
                "MDP_WAREHOUSE_DATA_PATH",
                f"the warehouse data files go to a local folder ({data_path})",
                "MDP_WAREHOUSE_DATA_PATH=s3://<bucket>/<prefix>/ (or leave it unset)",
            )
        )
    if s.oltp_url.startswith("sqlite"):
        out.append(
            FileBackedStore(
                "MDP_OLTP_URL",
                "the OLTP database is a SQLite file",
                "MDP_OLTP_URL=postgresql+psycopg2://...",
            )
        )
    if s.versioning == "local":
        out.append(
            FileBackedStore(
                "MDP_VERSIONING",
                f"dataset versions are kept in a local store ({s.data_dir / 'versions'})",
                "MDP_VERSIONING=lakefs with LAKEFS_ENDPOINT",
            )
        )
    if not s.fiftyone_database_uri_is_set:
        out.append(
            FileBackedStore(
                "MDP_FIFTYONE_DATABASE_URI",
                f"FiftyOne uses the bundled mongod ({s.data_dir / 'fiftyone'})",
                "MDP_FIFTYONE_DATABASE_URI=mongodb://...",
            )
        )
    if instance_storage(s) == "sqlite":
        out.append(
            FileBackedStore(
                "MDP_DAGSTER_POSTGRES_URL",
                f"Dagster keeps runs, events and schedules in SQLite under {s.dagster_home}",
                "MDP_DAGSTER_POSTGRES_URL=postgresql://... (and no SQLite storage block in "
                "$DAGSTER_HOME/dagster.yaml)",
            )
        )
    return out


def profile_problems(s: Settings) -> list[str]:
    """Why these settings cannot work together (empty when they can), one line per problem."""
    problems: list[str] = []
    data_path = warehouse_data_path(s)
    if s.warehouse_catalog.startswith("postgres:") and _is_local_path(data_path):
        source = "MDP_WAREHOUSE_DATA_PATH" if s.warehouse_data_path else "MDP_OBJECT_STORE=local"
        problems.append(
            f"MDP_WAREHOUSE_CATALOG is on PostgreSQL but the warehouse data path ({source}) is "
            f"a local folder ({data_path}): every host that shares the catalog would find file "
            "names it cannot read; set MDP_WAREHOUSE_DATA_PATH=s3://... (or MDP_OBJECT_STORE=s3)"
        )
    reasons = []
    if s.profile == "production":
        reasons.append("MDP_PROFILE=production keeps every store on a server")
    if s.executor_kind == "celery":
        default = "" if s.executor else " (the production profile's default)"
        reasons.append(f"MDP_EXECUTOR=celery{default} runs steps on other hosts")
    if s.executor_kind == "celery" and "MDP_CELERY_BROKER_URL" not in s.secrets_set:
        problems.append(
            "MDP_EXECUTOR=celery needs MDP_CELERY_BROKER_URL: the Redis broker the Celery "
            "workers listen to (e.g. redis://redis.internal:6379/0)"
        )
    if reasons:
        for store in file_backed_stores(s):
            problems.append(f"{' and '.join(reasons)}, but {store.what}: set {store.fix}")
    return problems


def check_profile(s: Settings) -> None:
    """Raise one ``SettingsError`` listing every problem of :func:`profile_problems`."""
    problems = profile_problems(s)
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise SettingsError(f"the configuration cannot run as set (docs/scale-out.md):\n{listed}")
