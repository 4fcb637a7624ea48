"""``mdp datasets``: browse dataset versions (log, show, diff) and roll back (revert)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from my_data_platform.cli._common import console, fail, version_store

app = typer.Typer(help="Browse and roll back dataset versions (embedded store or lakeFS).")


def _commit_json(c: Any) -> dict[str, Any]:
    return {
        "id": c.id,
        "message": c.message,
        "metadata": dict(c.metadata),
        "created_at": c.created_at.isoformat(),
        "parents": list(c.parents),
    }


@app.command("log")
def datasets_log(
    ref: Annotated[str, typer.Option(help="Branch, tag or commit.")] = "main",
    limit: Annotated[int, typer.Option(min=1)] = 20,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """Commits of a ref (default main), newest first."""
    from my_data_platform.core.versioning import VersioningError

    vs = version_store()
    try:
        commits = vs.log(ref, limit)
    except VersioningError as exc:
        fail(str(exc))
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


@app.command("show")
def datasets_show(
    ref: Annotated[str, typer.Argument(help="Branch, tag or commit id.")] = "main",
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """One version: its commit, objects, and example counts per split."""
    import polars as pl

    from my_data_platform.core import datasets as D
    from my_data_platform.core.versioning import VersioningError

    vs = version_store()
    try:
        commit = vs.get_commit(ref)
        objects = vs.list_objects(commit.id)
        counts = (
            D.split_counts(D.read_examples(vs.get_object(commit.id, D.EXAMPLES)))
            if any(o.path == D.EXAMPLES for o in objects)
            else {}
        )
    except VersioningError as exc:
        fail(str(exc))
    except (pl.exceptions.PolarsError, OSError, KeyError) as exc:
        fail(f"{D.EXAMPLES} at {ref!r} is not a readable dataset: {type(exc).__name__}: {exc}")
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


@app.command("diff")
def datasets_diff(
    ref_a: Annotated[str, typer.Argument(help="Older ref.")],
    ref_b: Annotated[str, typer.Argument(help="Newer ref.")],
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """Changed objects between two versions, with example counts on each side."""
    import polars as pl

    from my_data_platform.core import datasets as D
    from my_data_platform.core.versioning import ObjectNotFoundError, VersioningError

    vs = version_store()

    def count(ref: str) -> int | None:
        try:
            return D.read_examples(vs.get_object(ref, D.EXAMPLES)).height
        except ObjectNotFoundError:
            return None
        except (pl.exceptions.PolarsError, OSError, KeyError) as exc:
            fail(f"{D.EXAMPLES} at {ref!r} is not a readable dataset: {type(exc).__name__}: {exc}")

    try:
        changes = vs.diff(ref_a, ref_b)
        counts = {ref_a: count(ref_a), ref_b: count(ref_b)}
    except VersioningError as exc:
        fail(str(exc))
    if format == "json":
        out = {"changes": [{"path": c.path, "type": c.type} for c in changes], "examples": counts}
        sys.stdout.write(json.dumps(out) + "\n")
        return
    for c in changes:
        console.print(f"{c.type:>8}  {c.path}")
    console.print(f"{len(changes)} changed object(s); examples: {counts[ref_a]} -> {counts[ref_b]}")


def _default_user() -> str:
    """The login name (``getpass`` reads LOGNAME/USER, then the password database)."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no USER and no passwd entry (some containers)
        return "unknown"


@app.command("revert")
def datasets_revert(
    ref: Annotated[str, typer.Argument(help="The version to return to: commit id or tag.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the commit).")],
    by: Annotated[str | None, typer.Option("--by", help="Who reverts (default: $USER).")] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation on a terminal.")
    ] = False,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """Roll main back to REF: one new commit with REF's objects, history kept, and Dagster's
    datasets/popularity pointed at it so training reads the reverted version."""
    from my_data_platform.core.versioning import VersioningError
    from my_data_platform.core.versioning.revert import revert
    from my_data_platform.defs.datasets.lineage import record_revert
    from my_data_platform.runner import get_instance

    if not reason.strip():
        fail("--reason must not be empty: say why you roll back")
    who = (by if by is not None else _default_user()).strip()
    if not who:
        fail("--by must not be empty")
    vs = version_store()
    if not yes and sys.stdin.isatty() and format != "json":
        try:
            changes = vs.diff("main", ref)
        except VersioningError as exc:
            fail(str(exc))
        for c in changes:
            console.print(f"{c.type:>8}  {c.path}")
        if not typer.confirm(f"revert main to {ref} ({len(changes)} changed object(s))?"):
            fail("aborted", code=1)
    try:
        head = revert(vs, ref, reverted_by=who, reason=reason)
    except VersioningError as exc:
        fail(str(exc))
    md = dict(head.metadata)
    # Dagster must learn of it, or training keeps reading the version we just rolled back
    record_revert(get_instance(), head.id, md)
    if format == "json":
        sys.stdout.write(json.dumps({"commit": _commit_json(head), "recorded": True}) + "\n")
        return
    console.print(f"[bold]done:[/] {head.message}", soft_wrap=True)
    console.print(f"  new head:      {head.id}", soft_wrap=True)
    console.print(f"  reverted_from: {md['reverted_from']}", soft_wrap=True)
    console.print(f"  reverted_to:   {md['reverted_to']}", soft_wrap=True)
    console.print(f"  by: {md['reverted_by']}  reason: {md['reason']}")
    console.print("  datasets/popularity now records this commit (training reads it)")
