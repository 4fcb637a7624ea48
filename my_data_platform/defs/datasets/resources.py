"""Dataset versioning as a resource: the embedded store by default, lakeFS in production."""

from abc import ABC, abstractmethod

import dagster as dg

from my_data_platform.core.versioning import LocalVersionStore, VersionStore


class VersioningResource(dg.ConfigurableResource, ABC):
    """Where dataset versions live. Assets call :meth:`get_store`."""

    repository: str = "datasets"

    @abstractmethod
    def get_store(self) -> VersionStore: ...


class LocalVersioningResource(VersioningResource):
    """The embedded, content-addressed store under ``$MDP_DATA_DIR/versions``."""

    root: str

    def get_store(self) -> VersionStore:
        store = LocalVersionStore(self.root, self.repository)
        store.create_repository()
        return store


class LakeFSVersioningResource(VersioningResource):
    """lakeFS through the official SDK; credentials stay ``EnvVar``s until run time."""

    endpoint: str
    access_key_id: str
    secret_access_key: str
    storage_namespace: str | None = None

    def get_store(self) -> VersionStore:
        from my_data_platform.core.versioning import LakeFSVersionStore

        store = LakeFSVersionStore(
            self.endpoint,
            self.access_key_id,
            self.secret_access_key,
            self.repository,
            storage_namespace=self.storage_namespace,
        )
        store.create_repository()
        return store


def versioning_resource_from_settings() -> VersioningResource:
    """The embedded store under the data dir, or lakeFS (its keys kept ``EnvVar``s)."""
    from my_data_platform.settings import SettingsError, get_settings

    s = get_settings()
    if s.versioning == "local":
        return LocalVersioningResource(
            root=str(s.data_dir / "versions"), repository=s.lakefs_repository
        )
    access_key_id = s.secret("LAKEFS_ACCESS_KEY_ID")
    secret_access_key = s.secret("LAKEFS_SECRET_ACCESS_KEY")
    missing = [
        name
        for name, value in (
            ("LAKEFS_ENDPOINT", s.lakefs_endpoint),
            ("LAKEFS_ACCESS_KEY_ID", access_key_id),
            ("LAKEFS_SECRET_ACCESS_KEY", secret_access_key),
        )
        if value is None
    ]
    if missing:
        raise SettingsError(f"MDP_VERSIONING=lakefs needs {', '.join(missing)}")
    return LakeFSVersioningResource(
        endpoint=s.lakefs_endpoint,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        repository=s.lakefs_repository,
        storage_namespace=s.lakefs_storage_namespace,
    )


@dg.definitions
def resources() -> dg.Definitions:
    """Settings are read when Dagster loads the code location, never at import time."""
    return dg.Definitions(resources={"versioning": versioning_resource_from_settings()})


def version_store_from_settings() -> VersionStore:
    """The configured store for code outside a run (the CLI): EnvVars resolved."""
    with dg.build_resources({"versioning": versioning_resource_from_settings()}) as res:
        return res.versioning.get_store()
