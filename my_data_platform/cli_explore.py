"""`mdp explore`: the FiftyOne app for one dataset version (filled in by the exploration work)."""

import typer


def register(app: typer.Typer) -> None:
    """Add the exploration commands to the ``mdp`` app."""
