"""``mdp``: the platform's command line (seed a world, run the graph, query the warehouse).

This module assembles the Typer app from one module per command group; :func:`main` turns
the errors a user can fix into one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer

from my_data_platform.cli import datasets, features, labels, model
from my_data_platform.cli._common import UserError, err
from my_data_platform.cli.demo import demo_summary
from my_data_platform.cli.explore import explore
from my_data_platform.cli.maintenance import maintenance
from my_data_platform.cli.run import run
from my_data_platform.cli.sql import sql
from my_data_platform.cli.world import seed

app = typer.Typer(
    help="my_data_platform: seed a world, run the asset graph, query the warehouse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(seed)
app.command()(run)
app.command()(sql)
app.add_typer(features.app, name="features")
app.add_typer(datasets.app, name="datasets")
app.add_typer(model.app, name="model")
app.add_typer(labels.app, name="labels")
app.command()(model.train)
app.command("demo-summary")(demo_summary)
app.command()(explore)
app.command()(maintenance)


def main() -> None:
    """The ``mdp`` console script."""
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
