"""Resources, registered once for the whole code location.

Built inside a ``@dg.definitions`` function so settings are read when Dagster loads the code
location, never at import time.
"""

import dagster as dg

from my_data_platform.core.warehouse import location_from_settings
from my_data_platform.defs.lake.resources import object_store_resource_from_settings
from my_data_platform.defs.sources.resources import OLTPResource
from my_data_platform.defs.warehouse.resources import DuckLakeIOManager, WarehouseResource


@dg.definitions
def resources() -> dg.Definitions:
    from my_data_platform.settings import get_settings

    settings = get_settings()
    store = object_store_resource_from_settings()
    location = location_from_settings()
    return dg.Definitions(
        resources={
            "object_store": store,
            "oltp": OLTPResource(url=settings.oltp_url),
            "io_manager": DuckLakeIOManager(
                catalog=location.catalog, data_path=location.data_path, object_store=store
            ),
            "warehouse": WarehouseResource(
                catalog=location.catalog, data_path=location.data_path, object_store=store
            ),
        }
    )
