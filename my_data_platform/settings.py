"""The one place configuration is read, and the only module that touches the environment.

Read lazily by :func:`get_settings` (never at import time), from the process environment and
then a ``.env`` file in the working directory. ``.env.example`` lists every variable;
docs/configuration.md explains how values and secrets reach resources.
"""

from __future__ import annotations

import functools
import os
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import dagster as dg

ObjectStoreKind = Literal["local", "s3"]
VersioningKind = Literal["local", "lakefs"]
ProfileKind = Literal["embedded", "production"]
ExecutorKind = Literal["in_process", "multiprocess", "celery"]

SECRET_VARS = (
    "MDP_OLTP_URL",
    "MDP_WAREHOUSE_CATALOG",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "LAKEFS_ACCESS_KEY_ID",
    "LAKEFS_SECRET_ACCESS_KEY",
    "MDP_FIFTYONE_DATABASE_URI",
    "MDP_ALERT_WEBHOOK_URL",
    "MDP_ANALYST_AWS_ACCESS_KEY_ID",
    "MDP_ANALYST_AWS_SECRET_ACCESS_KEY",
    # scale-out profile (docs/scale-out.md): URLs that may carry a password
    "MDP_DAGSTER_POSTGRES_URL",
    "MDP_CELERY_BROKER_URL",
    "MDP_CELERY_BACKEND_URL",
)
"""Variables that may hold a password or a token: resources get them as ``dg.EnvVar``s."""


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def _path(name: str) -> Path | None:
    """An optional folder: ``~`` expanded, made absolute (the working directory may change)."""
    value = _env(name)
    return None if value is None else Path(value).expanduser().resolve()


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
    media_cache_dir: Path | None
    schedule_timezone: str
    nightly_cron: str
    mongod_debug: bool
    analyst_memory_limit: str
    analyst_threads: int
    analyst_timeout_s: float
    secrets_set: frozenset[str]
    landing_max_image_pixels: int
    landing_max_image_bytes: int
    landing_max_inflated_bytes: int
    landing_max_line_bytes: int
    # run health: the run heartbeat, and when a silent run is dead (defs/automation/run_health)
    run_heartbeat_s: float
    run_stale_after_s: float
    # maintenance (docs/maintenance.md): snapshot retention, temp-file grace, weekly schedule
    warehouse_snapshot_retention_days: float = 7.0
    maintenance_grace_s: float = 3600.0
    maintenance_cron: str = "0 4 * * 0"
    # dataset branch retention (docs/maintenance.md): failed-audit run branches kept this long
    failed_branch_retention_days: float = 14.0
    # Crash safety (test-only, docs/ingest.md): a named crash point to die at by SIGKILL.
    crash_at: tuple[str, int] | None = None
    # --- scale-out profile (docs/scale-out.md) -----------------------------------------------
    # embedded: every store a file under MDP_DATA_DIR; production: every store on a server.
    profile: ProfileKind = "embedded"
    # MDP_EXECUTOR as set, or None: the code location's default executor (multiprocess),
    # celery on the production profile (see ``executor_kind``)
    executor: ExecutorKind | None = None
    # the running webserver `mdp run` launches its backfill through (production profile)
    webserver_url: str | None = None
    # how long Redis keeps a step delivered to a Celery worker that has not finished it before
    # giving it to another worker (the step of a worker that died); must exceed the longest step
    celery_visibility_timeout_s: float = 3600.0
    # --- end scale-out profile ----------------------------------------------------------------

    @property
    def lake_root(self) -> Path:
        """Root of the local object store: ``$MDP_DATA_DIR/lake``."""
        return self.data_dir / "lake"

    @property
    def ground_truth_dir(self) -> Path:
        """Where older generators wrote the hidden truth; it now lives in the object store
        (``synthetic/truth/``), and this folder is read only to migrate it (embedded profile)."""
        return self.data_dir / "ground_truth"

    @property
    def fiftyone_media_cache(self) -> Path:
        """This host's FiftyOne media cache (``MDP_MEDIA_CACHE_DIR``): the same path on every
        host lets a dataset built on one worker be reused on another (missing files are fetched
        again from the object store)."""
        return self.media_cache_dir or self.data_dir / "fiftyone" / "media"

    @property
    def fiftyone_database_uri_is_set(self) -> bool:
        return "MDP_FIFTYONE_DATABASE_URI" in self.secrets_set

    # --- scale-out profile (docs/scale-out.md) ---------------------------------------------------

    @property
    def executor_kind(self) -> ExecutorKind:
        """The executor runs use: ``MDP_EXECUTOR``, else celery on the production profile and
        Dagster's default (multiprocess) on the embedded one."""
        if self.executor is not None:
            return self.executor
        return "celery" if self.profile == "production" else "multiprocess"

    @property
    def dagster_postgres_url_is_set(self) -> bool:
        """Whether ``MDP_DAGSTER_POSTGRES_URL`` asks for the instance's storage on PostgreSQL."""
        return "MDP_DAGSTER_POSTGRES_URL" in self.secrets_set

    # --- end scale-out profile -------------------------------------------------------------------

    def secret(self, name: str, default: str | None = None) -> str | dg.EnvVar | None:
        """``dg.EnvVar(name)`` when the variable is set, else ``default`` (which holds no
        secret): a resource configured with it never shows the secret in the UI or logs."""
        if name not in SECRET_VARS:
            raise SettingsError(f"{name} is not one of the secret variables {SECRET_VARS}")
        if name not in self.secrets_set:
            return default
        import dagster as dg

        return dg.EnvVar(name)


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


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (_env(name, default) or default).lower()
    if value not in allowed:
        raise SettingsError(f"{name} must be {_one_of(allowed)}, got {value!r}")
    return value


def _one_of(allowed: tuple[str, ...]) -> str:
    quoted = [repr(a) for a in allowed]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _timezone(name: str) -> str:
    value = _env(name, "UTC") or "UTC"
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{name} must be an IANA time zone, got {value!r}") from None
    return value


def _cron(name: str, default: str) -> str:
    """Five fields (Dagster checks each when it builds the schedule)."""
    value = _env(name, default) or default
    if len(value.split()) != 5:
        raise SettingsError(f"{name} must be a five-field cron expression, got {value!r}")
    return value


def _flag(name: str) -> bool:
    value = _env(name)
    return value is not None and value.lower() not in ("0", "false")


def _crash_at(name: str) -> tuple[str, int] | None:
    """``<point>`` or ``<point>@<n>``: die at the n-th time (default 1) the point is reached.
    Which names exist is checked by ``defs.crashpoints`` (settings imports no defs)."""
    value = _env(name)
    if value is None:
        return None
    point, sep, count = value.partition("@")
    if not point or (sep and not count.isdigit()) or (sep and int(count) < 1):
        raise SettingsError(f"{name} must be <point> or <point>@<n> with n >= 1, got {value!r}")
    return point, int(count) if sep else 1


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
    kind = _choice("MDP_OBJECT_STORE", "local", ("local", "s3"))
    bucket = _env("MDP_S3_BUCKET")
    if kind == "s3" and not bucket:
        raise SettingsError("MDP_OBJECT_STORE=s3 needs MDP_S3_BUCKET")
    catalog = _env("MDP_WAREHOUSE_CATALOG") or f"sqlite:{data_dir / 'warehouse' / 'catalog.sqlite'}"
    if not catalog.startswith(("sqlite:", "postgres:", "duckdb:")):
        raise SettingsError(
            "MDP_WAREHOUSE_CATALOG must start with 'sqlite:', 'postgres:' or 'duckdb:', "
            f"got {catalog!r}"
        )
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
        feature_engine=_choice("MDP_FEATURE_ENGINE", "auto", ("auto", "cpu", "gpu")),
        label_window_hours=_int("MDP_LABEL_WINDOW_HOURS", 24) or 24,
        label_min_engagement=_int("MDP_LABEL_MIN_ENGAGEMENT", None),
        prediction_delay_hours=_float("MDP_PREDICTION_DELAY_HOURS", 1.0) or 0.0,
        versioning=_choice("MDP_VERSIONING", "local", ("local", "lakefs")),  # type: ignore[arg-type]
        lakefs_endpoint=_env("LAKEFS_ENDPOINT"),
        lakefs_repository=_env("MDP_LAKEFS_REPOSITORY", "datasets") or "datasets",
        lakefs_storage_namespace=_env("MDP_LAKEFS_STORAGE_NAMESPACE"),
        fiftyone_database_name=_env("MDP_FIFTYONE_DATABASE_NAME"),
        media_cache_dir=_path("MDP_MEDIA_CACHE_DIR"),
        schedule_timezone=_timezone("MDP_SCHEDULE_TIMEZONE"),
        nightly_cron=_cron("MDP_NIGHTLY_CRON", "0 2 * * *"),
        mongod_debug=_flag("MDP_MONGOD_DEBUG"),
        analyst_memory_limit=_env("MDP_ANALYST_MEMORY_LIMIT", "2GB") or "2GB",
        analyst_threads=max(1, _int("MDP_ANALYST_THREADS", 2) or 1),
        analyst_timeout_s=_float("MDP_ANALYST_TIMEOUT_S", 60.0) or 60.0,
        secrets_set=frozenset(n for n in SECRET_VARS if _env(n) is not None),
        landing_max_image_pixels=max(1, _int("MDP_LANDING_MAX_IMAGE_PIXELS", 50_000_000) or 0),
        landing_max_image_bytes=max(1, _int("MDP_LANDING_MAX_IMAGE_BYTES", 50 * 2**20) or 0),
        landing_max_inflated_bytes=_int("MDP_LANDING_MAX_INFLATED_BYTES", 512 << 20) or 512 << 20,
        landing_max_line_bytes=_int("MDP_LANDING_MAX_LINE_BYTES", 1 << 20) or 1 << 20,
        # run health
        **_run_health(),
        # maintenance
        warehouse_snapshot_retention_days=max(
            0.0, _float("MDP_WAREHOUSE_SNAPSHOT_RETENTION_DAYS", 7.0) or 0.0
        ),
        maintenance_grace_s=max(60.0, _float("MDP_MAINTENANCE_GRACE_S", 3600.0) or 0.0),
        maintenance_cron=_cron("MDP_MAINTENANCE_CRON", "0 4 * * 0"),
        # dataset branch retention
        failed_branch_retention_days=_float("MDP_FAILED_BRANCH_RETENTION_DAYS", 14.0) or 0.0,
        # Crash safety (test-only)
        crash_at=_crash_at("MDP_CRASH_AT"),
        # scale-out profile
        **_scale_out(),
    )


# --- scale-out profile (docs/scale-out.md) -------------------------------------------------------
# Each value is checked on its own here; how they combine (a file-backed store with a remote
# executor, ...) is checked when the definitions load (my_data_platform/profile.py).

_BROKER_SCHEMES = ("redis", "rediss", "amqp", "pyamqp")
_BACKEND_SCHEMES = ("redis", "rediss", "rpc", "db+postgresql")


def _scale_out() -> dict[str, object]:
    profile = _choice("MDP_PROFILE", "embedded", ("embedded", "production"))
    executor = _env("MDP_EXECUTOR")
    if executor is not None:
        executor = _choice("MDP_EXECUTOR", executor, ("in_process", "multiprocess", "celery"))
    _url_scheme("MDP_DAGSTER_POSTGRES_URL", ("postgresql", "postgres"))
    _url_scheme("MDP_CELERY_BROKER_URL", _BROKER_SCHEMES)
    _url_scheme("MDP_CELERY_BACKEND_URL", _BACKEND_SCHEMES)
    if _env("MDP_CELERY_BACKEND_URL") and not _env("MDP_CELERY_BROKER_URL"):
        raise SettingsError("MDP_CELERY_BACKEND_URL is set but MDP_CELERY_BROKER_URL is not")
    return {
        "profile": profile,
        "executor": executor,
        "webserver_url": webserver_url("MDP_WEBSERVER_URL", _env("MDP_WEBSERVER_URL")),
        "celery_visibility_timeout_s": _positive("MDP_CELERY_VISIBILITY_TIMEOUT_S", 3600.0),
    }


def _positive(name: str, default: float) -> float:
    value = _float(name, default)
    if not value:
        raise SettingsError(f"{name} must be positive, got {_env(name)!r}")
    return value


def _url_scheme(name: str, schemes: tuple[str, ...]) -> None:
    """A secret URL must use one of ``schemes``; the message shows the scheme, never the URL
    (it may hold a password)."""
    from urllib.parse import urlsplit

    value = _env(name)
    if value is None:
        return
    scheme = urlsplit(value).scheme.lower() if "://" in value else ""
    if scheme not in schemes:
        shown = f"{scheme}://..." if scheme else "a value without a scheme"
        raise SettingsError(
            f"{name} must be a {_one_of(tuple(s + '://' for s in schemes))} URL, got {shown}"
        )


def webserver_url(name: str, value: str | None) -> str | None:
    """An ``http(s)://host[:port][/path]`` base URL, without a trailing slash; anything else
    (another scheme, no host, credentials, a query) is a ``SettingsError`` naming ``name``."""
    from urllib.parse import urlsplit

    if value is None:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        raise SettingsError(f"{name} must be an http:// or https:// URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"{parts.scheme}://..." if parts.scheme else repr(value[:40])
        raise SettingsError(f"{name} must be an http:// or https:// URL, got {shown}")
    if not parts.hostname:
        raise SettingsError(f"{name} must name a host, got {value!r}")
    if parts.username or parts.password:
        raise SettingsError(f"{name} must not hold credentials (user:password@)")
    if parts.query or parts.fragment:
        raise SettingsError(f"{name} must be a base URL, without a query or fragment")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise SettingsError(f"{name} must not contain whitespace or control characters")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


# --- end scale-out profile -----------------------------------------------------------------------


def _run_health() -> dict[str, float]:
    """A run is judged dead after several missed heartbeats, never after one late write."""
    heartbeat = _float("MDP_RUN_HEARTBEAT_S", 30.0) or 0.0
    stale = _float("MDP_RUN_STALE_AFTER_S", 300.0) or 0.0
    if heartbeat <= 0:
        raise SettingsError(
            f"MDP_RUN_HEARTBEAT_S must be positive, got {_env('MDP_RUN_HEARTBEAT_S')!r}"
        )
    if stale < 3 * heartbeat:
        raise SettingsError(
            f"MDP_RUN_STALE_AFTER_S ({stale:g}) must be at least 3 x MDP_RUN_HEARTBEAT_S "
            f"({heartbeat:g}): a live run would be judged dead between two heartbeats"
        )
    return {"run_heartbeat_s": heartbeat, "run_stale_after_s": stale}


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()


def analyst_s3_credentials() -> tuple[str, str] | None:
    """The analyst session's own read-only S3 key pair (``MDP_ANALYST_AWS_ACCESS_KEY_ID`` and
    ``MDP_ANALYST_AWS_SECRET_ACCESS_KEY``), or None; never the pipeline's ``AWS_*`` keys."""
    key_id, secret = (
        _env("MDP_ANALYST_AWS_ACCESS_KEY_ID"),
        _env("MDP_ANALYST_AWS_SECRET_ACCESS_KEY"),
    )
    if (key_id is None) != (secret is None):
        raise SettingsError(
            "set both MDP_ANALYST_AWS_ACCESS_KEY_ID and MDP_ANALYST_AWS_SECRET_ACCESS_KEY, "
            "or neither"
        )
    return None if key_id is None or secret is None else (key_id, secret)


# --- the environment that configures libraries -------------------------------------------------


def configure_libraries() -> None:
    """Hugging Face never reaches the network (models load from local folders; an accidental
    Hub lookup fails fast instead of hanging), and FiftyOne sends no usage data."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"


def configure_fiftyone(database_uri: str, database_name: str, *, validate: bool) -> None:
    """Point FiftyOne at a database; it reads these variables when it is first imported.

    ``validate=False`` for the bundled mongod (the known 6.0.5 build; FiftyOne's version check
    would only warn about it on every connection). A production URI keeps the check.
    """
    os.environ["FIFTYONE_DATABASE_URI"] = database_uri
    os.environ["FIFTYONE_DATABASE_NAME"] = database_name
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    if not validate:
        os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
    # set by FiftyOne when it started its own mongod; it would override our URI's port
    os.environ.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)


def configure_dagster_home(home: Path) -> None:
    """Make ``home`` the instance ``dg.DagsterInstance.get()`` opens (it reads DAGSTER_HOME)."""
    os.environ["DAGSTER_HOME"] = str(home)
