"""The scale-out profile: each setting, every load-time combination error, the executor the
definitions get, and the instance config the runner writes (docs/scale-out.md)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from my_data_platform.profile import check_profile, instance_storage, profile_problems
from my_data_platform.runner import write_instance_config
from my_data_platform.settings import SettingsError, get_settings, reset_settings

NEW_VARS = (
    "MDP_PROFILE",
    "MDP_EXECUTOR",
    "MDP_DAGSTER_POSTGRES_URL",
    "MDP_CELERY_BROKER_URL",
    "MDP_CELERY_BACKEND_URL",
    "MDP_WEBSERVER_URL",
    "LAKEFS_ENDPOINT",
    "LAKEFS_ACCESS_KEY_ID",
    "LAKEFS_SECRET_ACCESS_KEY",
)

# Every store on a server: the production profile's minimum (nothing connects at load time).
PRODUCTION = {
    "MDP_PROFILE": "production",
    "MDP_OBJECT_STORE": "s3",
    "MDP_S3_BUCKET": "lake-bucket",
    "MDP_OLTP_URL": "postgresql+psycopg2://app:OLTP-PW@db.internal:5432/photos",
    "MDP_WAREHOUSE_CATALOG": "postgres:dbname=ducklake host=db.internal user=lake",
    "MDP_VERSIONING": "lakefs",
    "LAKEFS_ENDPOINT": "http://lakefs.internal:8000",
    "LAKEFS_ACCESS_KEY_ID": "AKIALAKEFS",
    "LAKEFS_SECRET_ACCESS_KEY": "LAKEFS-PW",
    "MDP_FIFTYONE_DATABASE_URI": "mongodb://fo:MONGO-PW@mongo.internal:27017/?authSource=admin",
    "MDP_DAGSTER_POSTGRES_URL": "postgresql://dagster:DAGSTER-PW@db.internal:5432/dagster",
    "MDP_CELERY_BROKER_URL": "redis://:REDIS-PW@redis.internal:6379/0",
    "MDP_WEBSERVER_URL": "http://dagster.internal:3000",
}


@pytest.fixture
def env(data_env: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in NEW_VARS:
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    return monkeypatch


def _set(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    reset_settings()


def _load() -> dg.Definitions:
    from my_data_platform.definitions import defs

    return defs()


# --- each variable on its own -----------------------------------------------------------------


def test_defaults_are_the_embedded_profile(env: pytest.MonkeyPatch) -> None:
    s = get_settings()
    assert (s.profile, s.executor, s.executor_kind, s.webserver_url) == (
        "embedded",
        None,
        "multiprocess",
        None,
    )
    assert not s.dagster_postgres_url_is_set
    assert profile_problems(s) == []


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MDP_PROFILE", "prod", "MDP_PROFILE must be 'embedded' or 'production', got 'prod'"),
        ("MDP_EXECUTOR", "k8s", "MDP_EXECUTOR must be 'in_process', 'multiprocess' or 'celery'"),
        ("MDP_DAGSTER_POSTGRES_URL", "mysql://u:SECRET-1@h/db", "got mysql://..."),
        ("MDP_DAGSTER_POSTGRES_URL", "u:SECRET-1@h/db", "got a value without a scheme"),
        ("MDP_CELERY_BROKER_URL", "http://u:SECRET-1@redis", "MDP_CELERY_BROKER_URL must be"),
        ("MDP_CELERY_BACKEND_URL", "ftp://u:SECRET-1@x", "MDP_CELERY_BACKEND_URL must be"),
    ],
)
def test_a_bad_value_names_its_variable_and_never_shows_a_secret(
    env: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    _set(env, {name: value})
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")) as caught:
        get_settings()
    assert "SECRET-1" not in str(caught.value)


def test_a_backend_without_a_broker_is_refused(env: pytest.MonkeyPatch) -> None:
    _set(env, {"MDP_CELERY_BACKEND_URL": "redis://r:6379/1"})
    with pytest.raises(SettingsError, match="MDP_CELERY_BACKEND_URL is set but MDP_CELERY_BROKER"):
        get_settings()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("file:///etc/passwd", "got file://"),
        ("javascript:alert(1)", "got javascript://"),
        ("gopher://127.0.0.1:70/_SET", "got gopher://"),
        ("ftp://dagster.internal", "got ftp://"),
        ("dagster.internal:3000", "http:// or https://"),
        ("http://", "must name a host"),
        ("http://admin:hunter2@dagster.internal", "must not hold credentials"),
        ("http://dagster.internal:99999", "http:// or https:// URL: Port out of range"),
        ("http://dagster.internal:3000/?next=//evil.example", "without a query or fragment"),
        ("http://dagster.internal/#x", "without a query or fragment"),
        ("http://dagster.internal/a b", "whitespace or control characters"),
        ("http://dagster.internal/\x00", "whitespace or control characters"),
    ],
)
def test_the_webserver_url_must_be_plain_http(
    env: pytest.MonkeyPatch, value: str, message: str
) -> None:
    if "\x00" in value:  # the environment cannot carry NUL: check the parser itself
        from my_data_platform.settings import webserver_url

        with pytest.raises(SettingsError, match="MDP_WEBSERVER_URL must not contain"):
            webserver_url("MDP_WEBSERVER_URL", value)
        return
    _set(env, {"MDP_WEBSERVER_URL": value})
    with pytest.raises(SettingsError, match="MDP_WEBSERVER_URL") as caught:
        get_settings()
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "normalized"),
    [
        ("https://Dagster.Internal:3000/", "https://dagster.internal:3000"),
        ("HTTP://127.0.0.1:3000/dagster/", "http://127.0.0.1:3000/dagster"),
        ("http://[::1]:3000", "http://[::1]:3000"),
    ],
)
def test_a_good_webserver_url_is_normalized(
    env: pytest.MonkeyPatch, value: str, normalized: str
) -> None:
    _set(env, {"MDP_WEBSERVER_URL": value})
    assert get_settings().webserver_url == normalized


# --- combinations, checked when the definitions load ------------------------------------------


def _problems(env: pytest.MonkeyPatch, values: dict[str, str], drop: tuple[str, ...] = ()) -> str:
    for name in drop:
        env.delenv(name, raising=False)
    _set(env, values)
    return "\n".join(profile_problems(get_settings()))


def test_the_full_production_profile_has_no_problem(env: pytest.MonkeyPatch) -> None:
    assert _problems(env, PRODUCTION) == ""
    s = get_settings()
    assert (s.profile, s.executor_kind, instance_storage(s)) == ("production", "celery", "postgres")


@pytest.mark.parametrize(
    ("change", "variable", "says"),
    [
        ({"MDP_OBJECT_STORE": "local"}, "MDP_OBJECT_STORE", "the object store is a local folder"),
        ({"MDP_VERSIONING": "local"}, "MDP_VERSIONING", "dataset versions are kept in a local"),
        ({"MDP_OLTP_URL": "sqlite:////srv/oltp.sqlite"}, "MDP_OLTP_URL", "a SQLite file"),
        ({"MDP_WAREHOUSE_CATALOG": "sqlite:/srv/c.sqlite"}, "MDP_WAREHOUSE_CATALOG", "flock"),
        ({"MDP_WAREHOUSE_CATALOG": "duckdb:/srv/c.duckdb"}, "MDP_WAREHOUSE_CATALOG", "DuckDB"),
        ({"MDP_WAREHOUSE_DATA_PATH": "/srv/warehouse/"}, "MDP_WAREHOUSE_DATA_PATH", "local"),
        ({"MDP_FIFTYONE_DATABASE_URI": ""}, "MDP_FIFTYONE_DATABASE_URI", "bundled mongod"),
        ({"MDP_DAGSTER_POSTGRES_URL": ""}, "MDP_DAGSTER_POSTGRES_URL", "SQLite under"),
    ],
)
@pytest.mark.parametrize("executor", ["celery", "multiprocess"])
def test_production_refuses_every_file_backed_store(
    env: pytest.MonkeyPatch, change: dict[str, str], variable: str, says: str, executor: str
) -> None:
    problems = _problems(env, {**PRODUCTION, **change, "MDP_EXECUTOR": executor})
    lines = [p for p in problems.splitlines() if "MDP_PROFILE=production" in p]
    assert len(lines) == 1, problems
    assert says in lines[0] and f"set {variable}=" in lines[0]
    if executor == "celery":
        assert "MDP_EXECUTOR=celery runs steps on other hosts" in lines[0]
    for secret in ("OLTP-PW", "MONGO-PW", "DAGSTER-PW", "REDIS-PW"):
        assert secret not in problems


def test_production_with_a_local_executor_is_fine(env: pytest.MonkeyPatch) -> None:
    for executor in ("in_process", "multiprocess"):
        assert _problems(env, {**PRODUCTION, "MDP_EXECUTOR": executor}) == ""


@pytest.mark.parametrize(
    "catalog", ["", "sqlite:/srv/catalog.sqlite", "duckdb:/srv/catalog.duckdb"]
)
def test_a_file_catalog_with_the_celery_executor_fails(
    env: pytest.MonkeyPatch, catalog: str
) -> None:
    embedded_but_servers = {**PRODUCTION, "MDP_PROFILE": "embedded", "MDP_EXECUTOR": "celery"}
    problems = _problems(env, {**embedded_but_servers, "MDP_WAREHOUSE_CATALOG": catalog})
    assert problems.count("\n") == 0, problems  # one problem: the catalog
    assert problems.startswith("MDP_EXECUTOR=celery runs steps on other hosts, but the DuckLake")
    assert "single writer lock is a flock on this host's disk" in problems
    assert "set MDP_WAREHOUSE_CATALOG=postgres:" in problems


def test_the_bundled_mongod_with_the_celery_executor_fails(env: pytest.MonkeyPatch) -> None:
    values = {**PRODUCTION, "MDP_PROFILE": "embedded", "MDP_EXECUTOR": "celery"}
    values.pop("MDP_FIFTYONE_DATABASE_URI")
    problems = _problems(env, values, drop=("MDP_FIFTYONE_DATABASE_URI",))
    assert problems.startswith("MDP_EXECUTOR=celery runs steps on other hosts, but FiftyOne")
    assert "set MDP_FIFTYONE_DATABASE_URI=mongodb://" in problems


def test_celery_without_a_broker_fails(env: pytest.MonkeyPatch) -> None:
    values = {k: v for k, v in PRODUCTION.items() if k != "MDP_CELERY_BROKER_URL"}
    problems = _problems(env, values, drop=("MDP_CELERY_BROKER_URL",))
    assert problems == (
        "MDP_EXECUTOR=celery needs MDP_CELERY_BROKER_URL: the Redis broker the Celery workers "
        "listen to (e.g. redis://redis.internal:6379/0)"
    )


@pytest.mark.parametrize("profile", ["embedded", "production"])
@pytest.mark.parametrize(
    ("change", "source"),
    [
        ({"MDP_WAREHOUSE_DATA_PATH": "/srv/warehouse/"}, "MDP_WAREHOUSE_DATA_PATH"),
        ({"MDP_WAREHOUSE_DATA_PATH": "file:///srv/warehouse/"}, "MDP_WAREHOUSE_DATA_PATH"),
        ({"MDP_OBJECT_STORE": "local"}, "MDP_OBJECT_STORE=local"),
    ],
)
def test_a_postgres_catalog_with_a_local_data_path_fails(
    env: pytest.MonkeyPatch, profile: str, change: dict[str, str], source: str
) -> None:
    values = {**PRODUCTION, "MDP_PROFILE": profile, "MDP_EXECUTOR": "multiprocess", **change}
    problems = _problems(env, values).splitlines()
    catalog = [p for p in problems if p.startswith("MDP_WAREHOUSE_CATALOG is on PostgreSQL")]
    assert len(catalog) == 1, problems
    assert f"the warehouse data path ({source}) is a local folder" in catalog[0]
    if profile == "embedded":
        assert problems == catalog  # nothing else is wrong on one host


def test_an_s3_data_path_with_a_postgres_catalog_is_fine_embedded(
    env: pytest.MonkeyPatch,
) -> None:
    values = {
        "MDP_WAREHOUSE_CATALOG": "postgres:dbname=lake host=db",
        "MDP_WAREHOUSE_DATA_PATH": "s3://bucket/warehouse/",
    }
    assert _problems(env, values) == ""


def test_the_operators_storage_block_decides_the_instance_storage(
    env: pytest.MonkeyPatch,
) -> None:
    _set(env, PRODUCTION)
    home = get_settings().dagster_home
    home.mkdir(parents=True)
    # the operator's SQLite block wins over MDP_DAGSTER_POSTGRES_URL: production refuses it
    (home / "dagster.yaml").write_text(
        yaml.safe_dump({"storage": {"sqlite": {"base_dir": str(home)}}})
    )
    assert instance_storage(get_settings()) == "sqlite"
    assert "Dagster keeps runs, events and schedules in SQLite" in _problems(env, {})
    # an operator's PostgreSQL block (separate credentials) needs no MDP_DAGSTER_POSTGRES_URL
    (home / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "run_storage": {
                    "module": "dagster_postgres.run_storage",
                    "class": "PostgresRunStorage",
                    "config": {"postgres_db": {"hostname": "db"}},
                },
                "event_log_storage": {
                    "module": "dagster_postgres.event_log",
                    "class": "PostgresEventLogStorage",
                    "config": {"postgres_db": {"hostname": "db"}},
                },
            }
        )
    )
    assert _problems(env, {}, drop=("MDP_DAGSTER_POSTGRES_URL",)) == ""
    assert instance_storage(get_settings()) == "postgres"


# --- what the definitions get --------------------------------------------------------------------


def test_the_embedded_default_loads_with_the_same_executor(env: pytest.MonkeyPatch) -> None:
    from my_data_platform.defs.automation.run_health import heartbeat_executor

    defs = _load()
    assert defs.executor is heartbeat_executor
    assert defs.resolve_implicit_global_asset_job_def().executor_def is heartbeat_executor


def test_a_bad_combination_fails_when_the_definitions_load(env: pytest.MonkeyPatch) -> None:
    _set(env, {"MDP_EXECUTOR": "celery", "MDP_CELERY_BROKER_URL": "redis://r:6379/0"})
    with pytest.raises(SettingsError) as caught:
        _load()
    message = str(caught.value)
    assert message.startswith("the configuration cannot run as set (docs/scale-out.md):")
    for variable in (
        "MDP_OBJECT_STORE",
        "MDP_WAREHOUSE_CATALOG",
        "MDP_OLTP_URL",
        "MDP_VERSIONING",
        "MDP_FIFTYONE_DATABASE_URI",
        "MDP_DAGSTER_POSTGRES_URL",
    ):
        assert f"set {variable}=" in message


def test_production_loads_with_celery_reading_the_broker_from_the_environment(
    env: pytest.MonkeyPatch,
) -> None:
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.system_config.objects import ResolvedRunConfig
    from dagster_celery.executor import CeleryExecutor

    _set(env, PRODUCTION)
    defs = _load()
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "celery_heartbeat_executor"
    # the definition holds the variables' names (what the UI shows), never the URLs
    assert job.executor_def.config_schema._config_fn({}) == {  # type: ignore[attr-defined]
        "broker": {"env": "MDP_CELERY_BROKER_URL"},
        "backend": {"env": "MDP_CELERY_BROKER_URL"},
        "config_source": {
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "broker_transport_options": {
                "visibility_timeout": 3600.0,
                "unacked_restore_interval": 1,
                "unacked_restore_throttle": 1,
            },
        },
    }

    resolved = ResolvedRunConfig.build(job, {})
    with dg.instance_for_test() as instance:
        executor = job.executor_def.executor_creation_fn(  # type: ignore[misc]
            dg.InitExecutorContext(
                job=InMemoryJob(job),
                executor_def=job.executor_def,
                executor_config=resolved.execution.execution_engine_config,
                instance=instance,
            )
        )
    assert isinstance(executor, CeleryExecutor)
    assert type(executor).__name__ == "HeartbeatCeleryExecutor"
    assert executor.broker == PRODUCTION["MDP_CELERY_BROKER_URL"]
    assert executor.backend == PRODUCTION["MDP_CELERY_BROKER_URL"]  # Redis serves both

    _set(env, {"MDP_CELERY_BACKEND_URL": "redis://:REDIS-PW@redis.internal:6379/1"})
    job = _load().resolve_implicit_global_asset_job_def()
    config = ResolvedRunConfig.build(job, {}).execution.execution_engine_config
    assert config["backend"] == "redis://:REDIS-PW@redis.internal:6379/1"


def test_celery_acknowledges_late_with_the_configured_visibility_timeout(
    env: pytest.MonkeyPatch,
) -> None:
    """A worker that dies in a step gives it back: the executor's celery config acknowledges
    late, and Redis redelivers after MDP_CELERY_VISIBILITY_TIMEOUT_S (which must be positive)."""
    from dagster._core.system_config.objects import ResolvedRunConfig

    _set(env, {**PRODUCTION, "MDP_CELERY_VISIBILITY_TIMEOUT_S": "900"})
    job = _load().resolve_implicit_global_asset_job_def()
    source = ResolvedRunConfig.build(job, {}).execution.execution_engine_config["config_source"]
    assert source["task_acks_late"] is True and source["task_reject_on_worker_lost"] is True
    assert source["broker_transport_options"]["visibility_timeout"] == 900.0
    for bad in ("0", "-5", "soon"):
        _set(env, {"MDP_CELERY_VISIBILITY_TIMEOUT_S": bad})
        with pytest.raises(SettingsError, match="MDP_CELERY_VISIBILITY_TIMEOUT_S"):
            get_settings()


@pytest.mark.parametrize("kind", ["in_process", "multiprocess"])
def test_a_local_executor_keeps_the_heartbeat(env: pytest.MonkeyPatch, kind: str) -> None:
    from dagster._core.system_config.objects import ResolvedRunConfig

    _set(env, {"MDP_EXECUTOR": kind})
    from my_data_platform.definitions import executor_from_settings

    executor_def = executor_from_settings(get_settings())
    assert executor_def is not None and executor_def.name == f"{kind}_heartbeat_executor"

    @dg.asset
    def one() -> int:
        return 1

    job = dg.Definitions(
        assets=[one], executor=executor_def
    ).resolve_implicit_global_asset_job_def()
    config = ResolvedRunConfig.build(job, {}).execution.execution_engine_config
    assert set(config) == {kind}


# --- the instance config ---------------------------------------------------------------------


def test_the_runner_writes_a_postgres_block_that_reads_the_url_from_the_environment(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dagster._core.instance.config import dagster_instance_config

    home = tmp_path / "home"
    target = write_instance_config(home, "MDP_DAGSTER_POSTGRES_URL")
    text = target.read_text()
    written = yaml.safe_load(text)
    assert written["storage"] == {"postgres": {"postgres_url": {"env": "MDP_DAGSTER_POSTGRES_URL"}}}
    assert "run_coordinator" in written  # the repo's keys are still merged
    # Dagster accepts the block, and resolves the URL from the variable at load time
    env.setenv("MDP_DAGSTER_POSTGRES_URL", PRODUCTION["MDP_DAGSTER_POSTGRES_URL"])
    config, _ = dagster_instance_config(str(home))
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "MDP_DAGSTER_POSTGRES_URL"}
    assert "DAGSTER-PW" not in text
    # idempotent: writing again changes nothing
    write_instance_config(home, "MDP_DAGSTER_POSTGRES_URL")
    assert target.read_text() == text


def test_the_runner_never_replaces_an_operators_storage(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    operator = {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "username": "ops",
                    "password": {"env": "OPS_PG_PASSWORD"},
                    "hostname": "pg.ops",
                    "db_name": "dagster",
                }
            }
        },
        "compute_logs": {"module": "dagster_aws.s3.compute_log_manager"},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(operator))
    write_instance_config(home, "MDP_DAGSTER_POSTGRES_URL")
    written = yaml.safe_load((home / "dagster.yaml").read_text())
    assert written["storage"] == operator["storage"]
    assert written["compute_logs"] == operator["compute_logs"]
    # nor a SQLite one, nor a per-store block
    for block in (
        {"storage": {"sqlite": {"base_dir": str(home)}}},
        {"run_storage": {"module": "x.runs", "class": "Runs", "config": {}}},
    ):
        (home / "dagster.yaml").write_text(yaml.safe_dump(block))
        write_instance_config(home, "MDP_DAGSTER_POSTGRES_URL")
        written = yaml.safe_load((home / "dagster.yaml").read_text())
        assert {k: written[k] for k in block} == block
        assert "storage" not in written or "sqlite" in written["storage"]


def test_without_the_variable_no_storage_block_is_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    written = yaml.safe_load(write_instance_config(home).read_text())
    assert not {"storage", "run_storage", "event_log_storage"} & set(written)


def test_get_instance_on_a_fresh_home_adds_the_block_from_settings(
    env: pytest.MonkeyPatch,
) -> None:
    from my_data_platform.runner import instance_postgres_url_env

    _set(env, {"MDP_DAGSTER_POSTGRES_URL": PRODUCTION["MDP_DAGSTER_POSTGRES_URL"]})
    s = get_settings()
    assert instance_postgres_url_env(s) == "MDP_DAGSTER_POSTGRES_URL"
    env.delenv("MDP_DAGSTER_POSTGRES_URL")
    reset_settings()
    assert instance_postgres_url_env(get_settings()) is None


def test_check_profile_lists_every_problem_in_one_error(env: pytest.MonkeyPatch) -> None:
    _set(env, {"MDP_PROFILE": "production"})
    with pytest.raises(SettingsError) as caught:
        check_profile(get_settings())
    lines = str(caught.value).splitlines()[1:]
    assert len(lines) == 7  # 6 file-backed stores and the missing Celery broker
    assert all(line.startswith("  - ") for line in lines)


# --- the example files -----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_the_production_example_is_a_valid_production_profile(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dotenv import dotenv_values

    values = {k: v for k, v in dotenv_values(ROOT / ".env.production.example").items() if v}
    assert values["MDP_PROFILE"] == "production"
    values["DAGSTER_HOME"] = str(tmp_path / "dagster_home")  # not /srv in a test
    assert _problems(env, values) == ""
    assert get_settings().executor_kind == "celery"


def test_every_scale_out_variable_is_in_the_examples_and_the_docs() -> None:
    example = (ROOT / ".env.example").read_text()
    docs = (ROOT / "docs" / "scale-out.md").read_text()
    for name in NEW_VARS[:6]:
        assert f"# {name}=" in example, name
        assert f"`{name}`" in docs, name
