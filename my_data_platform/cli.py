"""``mdp``: the platform's command line (seed a world, run the graph, query the warehouse).

Output goes through one rich console; errors are one clear line on stderr and a non-zero
exit, never a traceback, for the failures a user can fix (bad config, missing data).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
import time
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    help="my_data_platform: seed a world, run the asset graph, query the warehouse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


class UserError(Exception):
    """An error the user can act on: printed as one line, exit code 2."""


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _require_data_dir() -> None:
    from my_data_platform.settings import get_settings

    data_dir = get_settings().data_dir
    if not data_dir.is_dir():
        _fail(
            f"data dir {data_dir} does not exist: run `mdp seed` first, or set MDP_DATA_DIR "
            "to an existing data dir"
        )


def _store():
    from my_data_platform.defs.lake.resources import object_store_from_settings

    return object_store_from_settings()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@app.command()
def seed(
    days: Annotated[int, typer.Option(min=1, help="Days of activity logs.")] = 3,
    users: Annotated[int, typer.Option(min=1)] = 300,
    photos: Annotated[int, typer.Option(min=1, help="Photos uploaded over the days.")] = 3000,
    events_per_day: Annotated[int, typer.Option(min=1)] = 60_000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same world.")] = 42,
    corrupt_rate: Annotated[float, typer.Option(min=0.0, max=0.5)] = 0.0,
    start_date: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")] = "2026-01-01",
    append_days: Annotated[
        int, typer.Option(min=0, help="Append N days to the existing world instead.")
    ] = 0,
    force: Annotated[bool, typer.Option(help="Replace an existing world.")] = False,
) -> None:
    """Generate a synthetic photo-sharing world: OLTP tables, JPEG images, daily event logs."""
    from my_data_platform.settings import get_settings
    from my_data_platform.synth import WorldConfig, WorldExistsError, generate_world
    from my_data_platform.synth import append_days as append

    s = get_settings()
    store = _store()
    t0 = time.perf_counter()
    with _progress() as progress:
        tasks: dict[str, Any] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        try:
            if append_days:
                summary = append(append_days, store, s.oltp_url, s.ground_truth_dir, report)
            else:
                try:
                    start = dt.date.fromisoformat(start_date)
                except ValueError:
                    _fail(f"--start-date must be YYYY-MM-DD, got {start_date!r}")
                cfg = WorldConfig(
                    days=days,
                    users=users,
                    photos=photos,
                    events_per_day=events_per_day,
                    seed=seed,
                    corrupt_rate=corrupt_rate,
                    start_date=start,
                )
                summary = generate_world(
                    cfg, store, s.oltp_url, s.ground_truth_dir, report, force=force
                )
        except WorldExistsError as exc:
            _fail(f"{exc} (use --force to replace it, or --append-days N to extend it)")
        except FileNotFoundError as exc:
            _fail(str(exc))
    secs = time.perf_counter() - t0
    n_days = len(summary.days)
    console.print(
        f"[green]seeded[/] {n_days} day(s) {summary.days[0]}..{summary.days[-1]}: "
        f"{summary.users} users, {summary.photos} photos, {summary.events:,} event lines "
        f"in {secs:.1f}s into {store.describe()}"
    )
    if summary.corruptions:
        bad = ", ".join(f"{k}={v}" for k, v in sorted(summary.corruptions.items()) if v)
        console.print(f"injected bad data: {bad}")


@app.command()
def run(
    select: Annotated[
        str | None,
        typer.Option("--select", "-s", help="Dagster asset selection, e.g. 'group:warehouse'."),
    ] = None,
) -> None:
    """Materialize the selected assets (default: all) for every landed partition."""
    from my_data_platform.runner import execute_plan, get_instance, load_definitions, plan_refresh

    _require_data_dir()
    instance = get_instance()
    defs = load_definitions()
    try:
        plan = plan_refresh(defs, instance, select)
    except Exception as exc:
        _fail(str(exc))
    console.print(
        f"refreshing {sum(len(k) for _, k in plan.phases)} assets over "
        f"{len(plan.days)} landed day(s) in {plan.run_count} run(s); "
        f"instance: {instance.root_directory}"
    )
    t0 = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("runs", total=plan.run_count)

        def done(outcome: Any) -> None:
            label = outcome.partition or "unpartitioned"
            mark = "[green]ok[/]" if outcome.success else "[red]FAILED[/]"
            progress.console.print(
                f"  {mark} {label}: {', '.join(outcome.assets)}  (run {outcome.run_id[:8]})"
            )
            progress.advance(task)

        outcomes = execute_plan(defs, instance, plan, done)
    _print_run_summary(outcomes, time.perf_counter() - t0)
    if not all(o.success for o in outcomes) or any(
        "(blocking)" in c for o in outcomes for c in o.failed_checks
    ):
        raise typer.Exit(1)


def _print_run_summary(outcomes: list[Any], seconds: float) -> None:
    rows: dict[str, dict[str, int]] = {}
    for o in outcomes:
        for key, md in o.materializations.items():
            r = rows.setdefault(key, {"materializations": 0, "rows": 0})
            r["materializations"] += len(o.partition_materializations.get(key, {})) or 1
            n = md.get("dagster/row_count")
            if isinstance(n, int):
                r["rows"] += n
    table = Table(title="mdp run summary")
    table.add_column("asset")
    table.add_column("materializations", justify="right")
    table.add_column("rows", justify="right")
    for key in sorted(rows):
        table.add_row(key, str(rows[key]["materializations"]), f"{rows[key]['rows']:,}")
    console.print(table)
    failed = [s for o in outcomes for s in o.failed_steps]
    checks = [c for o in outcomes for c in o.failed_checks]
    ok = sum(o.success for o in outcomes)
    console.print(f"{ok}/{len(outcomes)} runs succeeded in {seconds:.1f}s")
    for f in failed:
        err.print(f"[red]failed step[/] {f}", highlight=False, soft_wrap=True)
    for c in checks:
        err.print(f"[red]failed check[/] {c}", highlight=False, soft_wrap=True)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL to run (read-only).")],
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json")] = "table",
) -> None:
    """Query the warehouse read-only, while the pipeline keeps writing."""
    from my_data_platform.core.warehouse import (
        ReadOnlyViolation,
        WarehouseError,
        location_from_settings,
        run_analyst_query,
    )

    if format not in ("table", "csv", "json"):
        _fail(f"--format must be table, csv or json, got {format!r}")
    _require_data_dir()
    import duckdb

    try:
        cols, rows = run_analyst_query(location_from_settings(), query, _store())
    except ReadOnlyViolation as exc:
        _fail(str(exc))
    except (WarehouseError, duckdb.Error) as exc:
        _fail(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if format == "json":
        sys.stdout.write(
            json.dumps([{c: _jsonable(v) for c, v in zip(cols, r, strict=True)} for r in rows])
            + "\n"
        )
    elif format == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows([[_jsonable(v) for v in r] for r in rows])
    else:
        table = Table(show_lines=False)
        for c in cols:
            table.add_column(c)
        for r in rows:
            table.add_row(*["NULL" if v is None else str(v) for v in r])
        console.print(table)
        console.print(f"{len(rows)} row(s)")


features_app = typer.Typer(help="Online features: the same definition as training, for one photo.")
app.add_typer(features_app, name="features")


def _parse_time(value: str) -> dt.datetime:
    try:
        ts = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--as-of must be an ISO-8601 time (e.g. 2026-01-02T10:00:00Z), got {value!r}")
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


@features_app.command("get")
def features_get(
    photo_id: Annotated[int, typer.Argument(help="The photo to serve features for.")],
    as_of: Annotated[
        str | None, typer.Option(help="ISO-8601 time (UTC if no offset); default: newest event.")
    ] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """The feature vector of one photo as of a time, computed by the training definition."""
    import polars as pl

    from my_data_platform.core import features as F
    from my_data_platform.core.warehouse import analyst_connection, location_from_settings
    from my_data_platform.defs.features.inputs import (
        observed_until,
        read_warehouse_table,
        scan_lake_events,
    )
    from my_data_platform.defs.features.objects import classifier_outputs
    from my_data_platform.defs.features.resources import feature_settings_from_settings

    if format not in ("table", "json"):
        _fail(f"--format must be table or json, got {format!r}")
    _require_data_dir()
    store = _store()
    conn = analyst_connection(location_from_settings(), store)
    try:
        photos = read_warehouse_table(
            conn, "warehouse", "photos", ["photo_id", "user_id", "uploaded_at", "caption"]
        )
        users = read_warehouse_table(
            conn, "warehouse", "users", ["user_id", "joined_at", "follower_count"]
        )
    except LookupError as exc:
        _fail(f"{exc}: run `mdp run` first")
    finally:
        conn.close()
    mine = photos.filter(pl.col("photo_id") == photo_id)
    if mine.height == 0:
        _fail(f"photo {photo_id} is not in warehouse.photos")
    author = mine["user_id"][0]
    author_photos = photos.filter(pl.col("user_id") == author)["photo_id"]
    try:
        all_events = scan_lake_events(store)
    except FileNotFoundError as exc:
        _fail(str(exc))
    when = _parse_time(as_of) if as_of else observed_until(all_events)
    events = all_events.filter(pl.col("photo_id").is_in(author_photos.implode()))
    try:
        extra = classifier_outputs(store).filter(pl.col("photo_id") == photo_id)
    except Exception:
        extra = None
    settings = feature_settings_from_settings()
    row = F.online_features(
        events, photos.lazy(), users.lazy(), photo_id, when, settings.config(), extra,
        engine=F.resolve_engine(settings.engine),
    )  # fmt: skip
    if format == "json":
        sys.stdout.write(json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n")
        return
    table = Table(title=f"features of photo {photo_id} as of {when.isoformat()}")
    table.add_column("feature")
    table.add_column("value", justify="right")
    for k, v in row.items():
        shown = f"[{len(v)} values]" if isinstance(v, list) and len(v) > 8 else str(v)
        table.add_row(k, shown)
    console.print(table)


datasets_app = typer.Typer(help="Browse dataset versions (embedded store or lakeFS).")
app.add_typer(datasets_app, name="datasets")


def _versions():
    from my_data_platform.core.versioning import VersioningError
    from my_data_platform.defs.datasets.resources import version_store_from_settings

    try:
        return version_store_from_settings()
    except VersioningError as exc:
        _fail(str(exc))


def _commit_json(c: Any) -> dict[str, Any]:
    return {
        "id": c.id,
        "message": c.message,
        "metadata": dict(c.metadata),
        "created_at": c.created_at.isoformat(),
        "parents": list(c.parents),
    }


@datasets_app.command("log")
def datasets_log(
    ref: Annotated[str, typer.Option(help="Branch, tag or commit.")] = "main",
    limit: Annotated[int, typer.Option(min=1)] = 20,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """Commits of a ref (default main), newest first."""
    from my_data_platform.core.versioning import VersioningError

    vs = _versions()
    try:
        commits = vs.log(ref, limit)
    except VersioningError as exc:
        _fail(str(exc))
    if format == "json":
        sys.stdout.write(json.dumps([_commit_json(c) for c in commits]) + "\n")
        return
    tags: dict[str, list[str]] = {}
    for name, cid in vs.list_tags().items():
        tags.setdefault(cid, []).append(name)
    table = Table(title=f"{vs.describe()} @ {ref}")
    for col in ("commit", "created", "message", "run", "tags"):
        table.add_column(col)
    for c in commits:
        table.add_row(
            c.id[:12], c.created_at.isoformat(timespec="seconds"), c.message,
            c.metadata.get("dagster_run_id", "")[:8], ", ".join(tags.get(c.id, [])),
        )  # fmt: skip
    console.print(table)


@datasets_app.command("show")
def datasets_show(
    ref: Annotated[str, typer.Argument(help="Branch, tag or commit id.")] = "main",
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """One version: its commit, objects, and example counts per split."""
    from my_data_platform.core import datasets as D
    from my_data_platform.core.versioning import VersioningError

    vs = _versions()
    try:
        commit = vs.get_commit(ref)
        objects = vs.list_objects(commit.id)
        counts = (
            D.split_counts(D.read_examples(vs.get_object(commit.id, D.EXAMPLES)))
            if any(o.path == D.EXAMPLES for o in objects)
            else {}
        )
    except VersioningError as exc:
        _fail(str(exc))
    info = {
        "commit": _commit_json(commit),
        "objects": [{"path": o.path, "size": o.size, "checksum": o.checksum} for o in objects],
        "splits": counts,
    }
    if format == "json":
        sys.stdout.write(json.dumps(info) + "\n")
        return
    console.print(f"[bold]commit[/] {commit.id}  {commit.created_at.isoformat()}\n{commit.message}")
    for k, v in sorted(commit.metadata.items()):
        console.print(f"  {k}: {v}")
    table = Table(title="objects")
    table.add_column("path")
    table.add_column("bytes", justify="right")
    for o in objects:
        table.add_row(o.path, f"{o.size:,}")
    console.print(table)
    if counts:
        st = Table(title="splits")
        for col in ("split", "examples", "authors", "positive rate"):
            st.add_column(col)
        for s, c in counts.items():
            st.add_row(s, str(c["examples"]), str(c["authors"]), f"{c['positive_rate']:.3f}")
        console.print(st)


@datasets_app.command("diff")
def datasets_diff(
    ref_a: Annotated[str, typer.Argument(help="Older ref.")],
    ref_b: Annotated[str, typer.Argument(help="Newer ref.")],
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """Changed objects between two versions, with example counts on each side."""
    from my_data_platform.core import datasets as D
    from my_data_platform.core.versioning import ObjectNotFoundError, VersioningError

    vs = _versions()

    def count(ref: str) -> int | None:
        try:
            return D.read_examples(vs.get_object(ref, D.EXAMPLES)).height
        except ObjectNotFoundError:
            return None

    try:
        changes = vs.diff(ref_a, ref_b)
        counts = {ref_a: count(ref_a), ref_b: count(ref_b)}
    except VersioningError as exc:
        _fail(str(exc))
    if format == "json":
        out = {"changes": [{"path": c.path, "type": c.type} for c in changes], "examples": counts}
        sys.stdout.write(json.dumps(out) + "\n")
        return
    for c in changes:
        console.print(f"{c.type:>8}  {c.path}")
    console.print(f"{len(changes)} changed object(s); examples: {counts[ref_a]} -> {counts[ref_b]}")


model_app = typer.Typer(help="Trained models: manifests in the object store.")
app.add_typer(model_app, name="model")


def _read_manifest(ref: str | None) -> dict[str, Any]:
    from my_data_platform.core.model_registry import ModelNotFoundError, read_manifest

    try:
        return read_manifest(_store(), ref)
    except ModelNotFoundError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


def _print_model(m: dict[str, Any], format: str) -> None:
    if format == "json":
        sys.stdout.write(json.dumps(m, default=str) + "\n")
        return
    if format != "table":
        _fail(f"--format must be table or json, got {format!r}")

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{float(v):.4f}"

    console.print(
        f"[bold]model[/] {m.get('manifest_uri', '')}\n"
        f"dataset commit {m['dataset_commit']}  seed {m['seed']}  device {m['device']}  "
        f"code {m.get('code_version', '?')}"
    )
    table = Table(title="ROC AUC / log loss")
    for col in ("scorer", "val ROC AUC", "test ROC AUC", "test log loss"):
        table.add_column(col)
    rows = [("model", m["metrics"]), *(m.get("baselines") or {}).items()]
    if m.get("oracle"):
        rows.append(("oracle", m["oracle"]))
    for name, r in rows:
        table.add_row(
            name, f(r["validation"].get("roc_auc")), f(r["test"].get("roc_auc")),
            f(r["test"].get("log_loss")),
        )  # fmt: skip
    console.print(table)
    rep = m.get("reproduction")
    if rep:
        verdict = "[green]matches[/]" if rep["matches"] else "[red]differs[/]"
        console.print(f"reproduction {verdict}: max |diff| {rep['max_abs_diff']}")


@model_app.command("show")
def model_show(
    manifest: Annotated[
        str | None, typer.Argument(help="Manifest path/URI/key; default: the newest model.")
    ] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """The newest model's provenance manifest: dataset commit, seed, device, metrics."""
    _require_data_dir()
    _print_model(_read_manifest(manifest), format)


@app.command()
def train(
    reproduce: Annotated[
        str | None,
        typer.Option(help="Retrain from this manifest (path, URI or object key) and compare."),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Override the manifest's device (e.g. cpu).")
    ] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """Retrain the popularity model from a manifest; exit 3 if the metrics differ (> 1e-6).

    To train a new model, materialize it: `mdp run --select training/popularity_model`.
    """
    if reproduce is None:
        _fail(
            "give --reproduce MANIFEST (see `mdp model show`); to train a new model run "
            "`mdp run --select training/popularity_model`"
        )
    _require_data_dir()
    from my_data_platform.core.versioning import VersioningError
    from my_data_platform.defs.training.reproduce import reproduce_manifest

    m = _read_manifest(reproduce)
    try:
        out = reproduce_manifest(_versions(), m, device=device)
    except VersioningError as exc:
        _fail(f"dataset commit {m['dataset_commit']} cannot be read: {exc}")
        raise
    _print_model(out, format)
    if not out["reproduction"]["matches"] and (device is None or device == m.get("device")):
        raise typer.Exit(3)


@app.command("demo-summary")
def demo_summary() -> None:
    """Print where to look after `make demo`."""
    from my_data_platform.core.warehouse import location_from_settings, run_analyst_query

    loc = location_from_settings()
    _, rows = run_analyst_query(
        loc,
        "SELECT (SELECT count(*) FROM warehouse.events), "
        "(SELECT count(*) FROM warehouse.events_quarantine), "
        "(SELECT count(*) FROM warehouse.photos), (SELECT count(*) FROM warehouse.users)",
        _store(),
    )
    events, quarantined, photos, users = rows[0]
    console.print(
        f"\n[bold]warehouse[/]: {events:,} events, {quarantined:,} quarantined lines, "
        f"{photos:,} photos, {users:,} users  ({loc.describe()})"
    )
    try:
        _, frows = run_analyst_query(
            loc,
            "SELECT count(*), avg(label) FROM features.training_examples",
            _store(),
        )
        console.print(
            f"[bold]features[/]:  {frows[0][0]:,} training examples, positive rate "
            f"{float(frows[0][1] or 0):.1%}  (mdp features get <photo_id>)"
        )
    except Exception:
        pass
    try:
        from my_data_platform.defs.datasets.resources import version_store_from_settings

        vs = version_store_from_settings()
        head = vs.log("main", 1)[0]
        console.print(
            f"[bold]dataset[/]:   main @ {head.id[:12]} ({head.message}); "
            "mdp datasets log | show main"
        )
    except Exception:
        pass
    try:
        from my_data_platform.core.model_registry import read_manifest

        m = read_manifest(_store())
        sm = m.get("summary") or {}

        def f(v: Any) -> str:
            return "n/a" if v is None else f"{float(v):.3f}"

        table = Table(title=f"popularity model on dataset {m['dataset_commit'][:12]} (test split)")
        for col in ("scorer", "ROC AUC", "log loss"):
            table.add_column(col)
        rows = [("model", m["metrics"]), *(m.get("baselines") or {}).items()]
        if m.get("oracle"):
            rows.append(("oracle (hidden popularity)", m["oracle"]))
        for name, r in rows:
            table.add_row(name, f(r["test"].get("roc_auc")), f(r["test"].get("log_loss")))
        console.print(table)
        frac = sm.get("fraction_of_oracle")
        console.print(
            f"[bold]model[/]:     beats both baselines: {sm.get('beats_baselines')}; "
            f"{'n/a' if frac is None else f'{frac:.1%}'} of the oracle's ROC AUC; "
            "mdp model show --format json"
        )
        console.print(
            f"[bold]FiftyOne[/]:  mdp explore {m['dataset_commit'][:12]}  ->  "
            "http://127.0.0.1:5151 (sort by prediction_loss for the worst mistakes)"
        )
    except Exception as exc:
        console.print(f"[bold]model[/]:     not trained yet ({exc})")
    console.print("[bold]Dagster UI[/]:   make dev   ->  http://127.0.0.1:3000")
    console.print(
        '[bold]SQL[/]:          .venv/bin/mdp sql "SELECT * FROM warehouse.photo_engagement_daily '
        'ORDER BY likes DESC LIMIT 10"'
    )


def _register_subcommands() -> None:
    from my_data_platform import cli_explore

    cli_explore.register(app)


_register_subcommands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        from my_data_platform.core.objectstore import ObjectStoreError
        from my_data_platform.core.oltp import OLTPError
        from my_data_platform.settings import SettingsError

        if isinstance(exc, ObjectStoreError | OLTPError | SettingsError | UserError):
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
