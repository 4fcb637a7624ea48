"""Where the configured warehouse is: its DuckLake catalog and the folder its data files go to."""

from __future__ import annotations

from typing import TYPE_CHECKING

from my_data_platform.core.warehouse import WarehouseLocation

if TYPE_CHECKING:
    from my_data_platform.settings import Settings


def warehouse_data_path(s: Settings) -> str:
    """``MDP_WAREHOUSE_DATA_PATH``, else ``warehouse/`` in the object store."""
    if s.warehouse_data_path:
        return s.warehouse_data_path
    if s.object_store == "s3":
        prefix = f"{s.s3_prefix}/" if s.s3_prefix else ""
        return f"s3://{s.s3_bucket}/{prefix}warehouse/"
    return str(s.lake_root / "warehouse") + "/"


def location_from_settings() -> WarehouseLocation:
    """The configured location with plain values, for code outside a run (CLI, tests)."""
    from my_data_platform.settings import get_settings

    s = get_settings()
    return WarehouseLocation(catalog=s.warehouse_catalog, data_path=warehouse_data_path(s))
