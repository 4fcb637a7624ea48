"""The one place configuration is read.

Everything is read lazily through :func:`get_settings`, never at import time, so tests and the
CLI can point the platform at another data dir by setting environment variables before the
first call (and calling :func:`reset_settings`). Values come from the process environment,
then from a ``.env`` file in the working directory; ``.env.example`` documents every name.
Secrets (S3 keys, lakeFS secrets) are never stored here: resources read them through
``dg.EnvVar`` so they stay out of logs and asset metadata.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import dagster as dg

ObjectStoreKind = Literal["local", "s3"]
VersioningKind = Literal["local", "lakefs"]

SECRET_VARS = (
    "MDP_OLTP_URL",
    "MDP_WAREHOUSE_CATALOG",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "LAKEFS_ACCESS_KEY_ID",
    "LAKEFS_SECRET_ACCESS_KEY",
    "MDP_FIFTYONE_DATABASE_URI",
    "MDP_ALERT_WEBHOOK_URL",
)


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    object_store: ObjectStoreKind
    s3_bucket: str | None
    s3_prefix: str
    s3_endpoint_url: str | None
    s3_region: str
    oltp_url: str
    warehouse_catalog: str
    warehouse_data_path: str | None
    dagster_home: Path
    feature_engine: str
    label_window_hours: int
    label_min_engagement: int | None
    prediction_delay_hours: float
    versioning: VersioningKind
    lakefs_endpoint: str | None
    lakefs_repository: str
    lakefs_storage_namespace: str | None
    fiftyone_database_name: str | None
    schedule_timezone: str
    nightly_cron: str
    mongod_debug: bool
    secrets_set: frozenset[str]

    def secret(self, name: str, default: str | None = None) -> str | dg.EnvVar | None:
        """``dg.EnvVar(name)`` when the variable is set, else ``default`` (holds no secret)."""
        if name in self.secrets_set:
            import dagster as dg

            return dg.EnvVar(name)
        return default

    @property
    def fiftyone_database_uri_is_set(self) -> bool:
        return "MDP_FIFTYONE_DATABASE_URI" in self.secrets_set

    @property
    def lake_root(self) -> Path:
        """Root of the local object store: ``$MDP_DATA_DIR/lake``."""
        return self.data_dir / "lake"

    @property
    def ground_truth_dir(self) -> Path:
        """Where the generator writes what the pipeline must never read (the hidden truth)."""
        return self.data_dir / "ground_truth"

    @property
    def alerts_dir(self) -> Path:
        return self.data_dir / "alerts"


def _float(name: str, default: float | None) -> float | None:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {raw!r}")
    return value


def _int(name: str, default: int | None) -> int | None:
    value = _float(name, None if default is None else float(default))
    if value is None:
        return None
    if value != int(value):
        raise SettingsError(f"{name} must be a whole number, got {_env(name)!r}")
    return int(value)


def _load_dotenv() -> None:
    try:
        from dotenv import load_dotenv
    except ImportError:  # pragma: no cover - python-dotenv ships with dagster
        return
    load_dotenv(Path.cwd() / ".env", override=False)


@functools.cache
def get_settings() -> Settings:
    """Read the settings once per process (call :func:`reset_settings` after changing env)."""
    _load_dotenv()
    configure_libraries()
    data_dir = Path(_env("MDP_DATA_DIR", "./data") or "./data").expanduser().resolve()
    kind = (_env("MDP_OBJECT_STORE", "local") or "local").lower()
    if kind not in ("local", "s3"):
        raise SettingsError(f"MDP_OBJECT_STORE must be 'local' or 's3', got {kind!r}")
    bucket = _env("MDP_S3_BUCKET")
    if kind == "s3" and not bucket:
        raise SettingsError("MDP_OBJECT_STORE=s3 needs MDP_S3_BUCKET")
    catalog = _env("MDP_WAREHOUSE_CATALOG") or f"sqlite:{data_dir / 'warehouse' / 'catalog.sqlite'}"
    if not catalog.startswith(("sqlite:", "postgres:", "duckdb:")):
        raise SettingsError(
            "MDP_WAREHOUSE_CATALOG must start with 'sqlite:', 'postgres:' or 'duckdb:', "
            f"got {catalog!r}"
        )
    versioning = (_env("MDP_VERSIONING", "local") or "local").lower()
    if versioning not in ("local", "lakefs"):
        raise SettingsError(f"MDP_VERSIONING must be 'local' or 'lakefs', got {versioning!r}")
    return Settings(
        data_dir=data_dir,
        object_store=kind,  # type: ignore[arg-type]
        s3_bucket=bucket,
        s3_prefix=(_env("MDP_S3_PREFIX", "") or "").strip("/"),
        s3_endpoint_url=_env("MDP_S3_ENDPOINT_URL") or _env("AWS_ENDPOINT_URL"),
        s3_region=_env("AWS_REGION") or _env("AWS_DEFAULT_REGION") or "us-east-1",
        oltp_url=_env("MDP_OLTP_URL") or f"sqlite:///{data_dir / 'oltp.sqlite'}",
        warehouse_catalog=catalog,
        warehouse_data_path=_env("MDP_WAREHOUSE_DATA_PATH"),
        dagster_home=Path(_env("DAGSTER_HOME") or str(data_dir / "dagster_home")).resolve(),
        feature_engine=_engine(),
        label_window_hours=_int("MDP_LABEL_WINDOW_HOURS", 24) or 24,
        label_min_engagement=_int("MDP_LABEL_MIN_ENGAGEMENT", None),
        prediction_delay_hours=_float("MDP_PREDICTION_DELAY_HOURS", 1.0) or 0.0,
        versioning=versioning,  # type: ignore[arg-type]
        lakefs_endpoint=_env("LAKEFS_ENDPOINT"),
        lakefs_repository=_env("MDP_LAKEFS_REPOSITORY", "datasets") or "datasets",
        lakefs_storage_namespace=_env("MDP_LAKEFS_STORAGE_NAMESPACE"),
        fiftyone_database_name=_env("MDP_FIFTYONE_DATABASE_NAME"),
        schedule_timezone=_env("MDP_SCHEDULE_TIMEZONE", "UTC") or "UTC",
        nightly_cron=_env("MDP_NIGHTLY_CRON", "0 2 * * *") or "0 2 * * *",
        mongod_debug=(_env("MDP_MONGOD_DEBUG") or "0").lower() not in ("0", "false"),
        secrets_set=frozenset(n for n in SECRET_VARS if _env(n) is not None),
    )


def _engine() -> str:
    engine = (_env("MDP_FEATURE_ENGINE", "auto") or "auto").lower()
    if engine not in ("auto", "cpu", "gpu"):
        raise SettingsError(f"MDP_FEATURE_ENGINE must be auto, cpu or gpu, got {engine!r}")
    return engine


def configure_libraries() -> None:
    """Configure libraries through their environment variables: the caption model never
    reaches the Hugging Face Hub, and FiftyOne does not phone home. Idempotent."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"


def configure_fiftyone(database_uri: str, database_name: str, *, validate: bool) -> None:
    """Point FiftyOne at a database; it reads these when first imported (and its App server,
    a subprocess, reads them too). ``validate=False`` skips its MongoDB version check."""
    os.environ["FIFTYONE_DATABASE_URI"] = database_uri
    os.environ["FIFTYONE_DATABASE_NAME"] = database_name
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    if not validate:
        os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
    # set by FiftyOne when it started its own mongod; it would override our URI's port
    os.environ.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
