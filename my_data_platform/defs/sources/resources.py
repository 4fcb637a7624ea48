"""The OLTP metadata database as a Dagster resource (any SQLAlchemy URL)."""

from __future__ import annotations

import dagster as dg
import numpy as np
import polars as pl

from my_data_platform.core import oltp


class OLTPResource(dg.ConfigurableResource):
    """The app's row-oriented database: ``users``, ``photos`` and the optional labelling
    tables ``photo_annotations`` and ``annotation_gold``. Read, never written."""

    url: str

    def describe(self) -> str:
        return oltp.redact_url(self.url)

    def read_table(self, table: str, columns: list[str]) -> pl.DataFrame:
        return oltp.read_table(self.url, table, columns)

    def has_table(self, table: str) -> bool:
        return oltp.has_table(self.url, table)

    def read_ids(self, table: str, column: str) -> np.ndarray:
        return oltp.read_ids(self.url, table, column)


def oltp_resource_from_settings() -> OLTPResource:
    """``MDP_OLTP_URL`` (it may hold a password) as an ``EnvVar``; else the SQLite default."""
    from my_data_platform.settings import get_settings

    s = get_settings()
    return OLTPResource(url=s.secret("MDP_OLTP_URL", s.oltp_url))


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"oltp": oltp_resource_from_settings()})
