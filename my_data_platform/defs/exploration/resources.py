"""FiftyOne as a resource: one shared bundled ``mongod`` per data dir by default, a MongoDB URI
in production (see docs/ml-assets.md)."""

from pathlib import Path
from types import ModuleType

import dagster as dg
from pydantic import Field

from my_data_platform.core.exploration import connect_fiftyone
from my_data_platform.core.mongo import DEFAULT_IDLE_TIMEOUT_S, ensure_mongod


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
        description="Local copies of images from a remote object store, for the App "
        "(default $MDP_DATA_DIR/fiftyone/media).",
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


def fiftyone_resource_from_settings() -> FiftyOneResource:
    """The bundled mongod under the data dir, unless ``MDP_FIFTYONE_DATABASE_URI`` is set (kept
    an ``EnvVar``: a URI may hold a password)."""
    from my_data_platform.settings import get_settings

    s = get_settings()
    home = s.data_dir / "fiftyone"
    kwargs: dict = {
        "database_dir": str(home),
        "media_dir": str(home / "media"),
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
