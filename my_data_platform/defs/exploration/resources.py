"""FiftyOne as a resource: one shared bundled ``mongod`` per data dir by default, a MongoDB URI
in production (see docs/ml-assets.md).

Media: the object store is the source of truth for every image. OSS FiftyOne needs a local
file per sample, so each host (worker or App host) keeps a *cache* of images it fetched from the
store, ``media_dir``, one file per object key. The cache is safe to delete and never needed
across steps: a step that finds a sample's file missing on its host fetches it again from the
store (:func:`fill_media_cache`), or rebuilds the samples with paths of its own cache
(docs/storage.md, "What lives where")."""

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg
from pydantic import Field

from my_data_platform.core import exploration as X
from my_data_platform.core.exploration import connect_fiftyone
from my_data_platform.core.fsutil import atomic_write_bytes
from my_data_platform.core.mongo import DEFAULT_IDLE_TIMEOUT_S, ensure_mongod
from my_data_platform.core.objectstore import (
    InvalidKeyError,
    LocalObjectStore,
    ObjectStore,
    validate_key,
)
from my_data_platform.core.versioning import VersionStore

logger = logging.getLogger(__name__)


class FiftyOneResource(dg.ConfigurableResource):
    """Where FiftyOne keeps its datasets. Assets call :meth:`get_fiftyone`."""

    database_uri: str | None = Field(
        default=None,
        description="A MongoDB URI (production). Unset: the bundled mongod in database_dir.",
    )
    database_dir: str | None = Field(
        default=None, description="Home of the bundled mongod (default $MDP_DATA_DIR/fiftyone)."
    )
    database_name: str = "fiftyone"
    media_dir: str | None = Field(
        default=None,
        description="This host's cache of images from a remote object store, for the App "
        "(default $MDP_DATA_DIR/fiftyone/media). Safe to delete; refilled on demand. The same "
        "path on every host lets hosts share the samples' paths without rebuilding them.",
    )
    mongod_idle_timeout_s: float | None = Field(
        default=DEFAULT_IDLE_TIMEOUT_S,
        description="Stop the bundled mongod after this long without clients (None: never).",
    )
    mongod_debug: bool = Field(
        default=False, description="Log every poll of the bundled mongod's idle supervisor."
    )

    def home(self) -> Path:
        if self.database_dir:
            return Path(self.database_dir)
        from my_data_platform.settings import get_settings

        return get_settings().data_dir / "fiftyone"

    def media_path(self) -> Path:
        return Path(self.media_dir) if self.media_dir else self.home() / "media"

    def uri(self) -> str:
        """The MongoDB URI, starting the shared bundled mongod if it is not running."""
        if self.database_uri:
            return self.database_uri
        return ensure_mongod(
            self.home(), idle_timeout_s=self.mongod_idle_timeout_s, debug=self.mongod_debug
        )

    def get_fiftyone(self) -> ModuleType:
        """The ``fiftyone`` module, connected to this resource's database."""
        from my_data_platform.settings import configure_fiftyone

        uri = self.uri()
        # FiftyOne (and the App server it starts) reads its database from the environment
        configure_fiftyone(uri, self.database_name, validate=bool(self.database_uri))
        return connect_fiftyone(uri, self.database_name)

    def dataset_for_commit(
        self, fo: ModuleType, versions: VersionStore, store: ObjectStore, commit_id: str
    ) -> X.BuildResult:
        """The FiftyOne dataset of ``commit_id`` with every sample's image on *this* host:
        images missing from this host's cache are fetched from the store first, so a dataset
        built on another worker is reused, not rebuilt; one whose paths are not this host's
        cache is rebuilt from the commit and the store (never from another host's files)."""
        ds = X.open_dataset(fo, X.dataset_name(commit_id))
        if ds is not None:
            fill_media_cache(ds.values("filepath"), store, self.media_path())
        return X.build_from_commit(fo, versions, store, commit_id, self.media_path())


def fill_media_cache(
    filepaths: list[Any], store: ObjectStore, cache_dir: str | Path, workers: int = 8
) -> int:
    """Fetch from ``store`` every missing file of ``filepaths`` that lies in ``cache_dir`` (its
    path below the cache is its object key); returns how many were fetched. Paths outside the
    cache (another host's cache, or a local store's own files) are left alone: the caller
    rebuilds those samples. Each file is written atomically, so concurrent fills on one host
    never expose a partial image."""
    if isinstance(store, LocalObjectStore):
        return 0  # the samples point at the store's own files: there is no cache to fill
    root = Path(cache_dir).resolve()
    wanted: dict[str, Path] = {}
    for raw in filepaths:
        path = Path(str(raw))
        if path.is_file():
            continue
        try:
            key = validate_key(path.relative_to(root).as_posix())
        except (ValueError, InvalidKeyError):  # not under this cache, or '..' and the like
            continue
        wanted[key] = root / key
    if not wanted:
        return 0

    def fetch(item: tuple[str, Path]) -> None:
        key, path = item
        atomic_write_bytes(path, store.get_bytes(key), fsync=False)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fetch, wanted.items()))
    logger.info("fetched %d image(s) into the media cache %s", len(wanted), root)
    return len(wanted)


def fiftyone_resource_from_settings() -> FiftyOneResource:
    """The bundled mongod under the data dir, unless ``MDP_FIFTYONE_DATABASE_URI`` is set (kept
    an ``EnvVar``: a URI may hold a password)."""
    from my_data_platform.settings import get_settings

    s = get_settings()
    home = s.data_dir / "fiftyone"
    kwargs: dict = {
        "database_dir": str(home),
        "media_dir": str(s.fiftyone_media_cache),
        "mongod_debug": s.mongod_debug,
    }
    if s.fiftyone_database_uri_is_set:
        kwargs["database_uri"] = s.secret("MDP_FIFTYONE_DATABASE_URI")
    if s.fiftyone_database_name:
        kwargs["database_name"] = s.fiftyone_database_name
    return FiftyOneResource(**kwargs)


@dg.definitions
def resources() -> dg.Definitions:
    """Settings are read when Dagster loads the code location, never at import time."""
    return dg.Definitions(resources={"fiftyone": fiftyone_resource_from_settings()})


def fiftyone_from_settings() -> FiftyOneResource:
    """The configured resource for code outside a run (the CLI): EnvVars resolved."""
    with dg.build_resources({"fiftyone": fiftyone_resource_from_settings()}) as res:
        return res.fiftyone
