"""``mdp``, the command line: one module per command group, shared helpers in ``_common``."""

from my_data_platform.cli.main import app, main

__all__ = ["app", "main"]
