"""Dataset versions: one interface (:class:`VersionStore`), an embedded default and lakeFS.

Pure Python, no Dagster: the Dagster resources in ``defs/datasets`` pick a backend and call it.
The lakeFS backend is imported lazily so the embedded store works without the SDK installed.
"""

from my_data_platform.core.versioning.base import (
    DEFAULT_BRANCH,
    AuthenticationError,
    BackendUnavailableError,
    Change,
    ChangeType,
    Commit,
    CommitConflictError,
    HookFailedError,
    InvalidNameError,
    LockTimeoutError,
    MergeConflictError,
    NoChangesError,
    ObjectEntry,
    ObjectNotFoundError,
    PermissionDeniedError,
    ProtectedBranchError,
    RefExistsError,
    RefNotFoundError,
    UncommittedChangesError,
    VersioningError,
    VersionStore,
)
from my_data_platform.core.versioning.local import LocalVersionStore

__all__ = [
    "DEFAULT_BRANCH",
    "AuthenticationError",
    "BackendUnavailableError",
    "Change",
    "ChangeType",
    "Commit",
    "CommitConflictError",
    "HookFailedError",
    "InvalidNameError",
    "LakeFSVersionStore",
    "LocalVersionStore",
    "LockTimeoutError",
    "MergeConflictError",
    "NoChangesError",
    "ObjectEntry",
    "ObjectNotFoundError",
    "PermissionDeniedError",
    "ProtectedBranchError",
    "RefExistsError",
    "RefNotFoundError",
    "UncommittedChangesError",
    "VersionStore",
    "VersioningError",
]


def __getattr__(name: str) -> object:
    if name == "LakeFSVersionStore":
        from my_data_platform.core.versioning.lakefs import LakeFSVersionStore

        return LakeFSVersionStore
    raise AttributeError(name)
