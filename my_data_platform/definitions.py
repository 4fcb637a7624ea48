"""The code location: every definition under ``defs/``, plus project-wide policies.

Kept thin on purpose. ``dagster dev`` (via pyproject's ``[tool.dg]``/``[tool.dagster]``),
``workspace.yaml`` and ``mdp`` all load this module, so every entry point sees the same graph.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
