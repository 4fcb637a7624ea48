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
    import os

    from my_data_platform.settings import SettingsError, get_settings

    s = get_settings()
    kind = (os.environ.get("MDP_VERSIONING") or "local").strip().lower()
    repo = os.environ.get("MDP_LAKEFS_REPOSITORY") or "datasets"
    if kind == "local":
        return LocalVersioningResource(root=str(s.data_dir / "versions"), repository=repo)
    if kind == "lakefs":
        missing = [
            n
            for n in ("LAKEFS_ENDPOINT", "LAKEFS_ACCESS_KEY_ID", "LAKEFS_SECRET_ACCESS_KEY")
            if not os.environ.get(n)
        ]
        if missing:
            raise SettingsError(f"MDP_VERSIONING=lakefs needs {', '.join(missing)}")
        return LakeFSVersioningResource(
            endpoint=os.environ["LAKEFS_ENDPOINT"],
            access_key_id=dg.EnvVar("LAKEFS_ACCESS_KEY_ID"),
            secret_access_key=dg.EnvVar("LAKEFS_SECRET_ACCESS_KEY"),
            repository=repo,
            storage_namespace=os.environ.get("MDP_LAKEFS_STORAGE_NAMESPACE") or None,
        )
    raise SettingsError(f"MDP_VERSIONING must be 'local' or 'lakefs', got {kind!r}")


def version_store_from_settings() -> VersionStore:
    """The configured store for code outside a run (the CLI): EnvVars resolved."""
    with dg.build_resources({"versioning": versioning_resource_from_settings()}) as res:
        return res.versioning.get_store()
