"""The dataset-versioning interface: git-like branches, commits, merges and tags over objects.

Two backends implement it, the embedded store (:mod:`.local`) and lakeFS (:mod:`.lakefs`), and
one contract suite runs on both. The contract (staging, commits, merges, conflicts) is written
out in ``docs/versioning.md``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from my_data_platform.core.objectstore import InvalidKeyError, validate_key

ChangeType = Literal["added", "removed", "changed"]

DEFAULT_BRANCH = "main"

# lakeFS accepts ``^\w[-\w]*$`` for branch ids; tags are looser but we keep one rule for both.
_REF_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,255}$")
_COMMIT_ID = re.compile(r"^[0-9a-f]{64}$")
# lakeFS's repository ids (validator.ReValidRepositoryID; the API spec's RepositoryCreation.name)
_LAKEFS_REPOSITORY = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")


class VersioningError(RuntimeError):
    """Base class of every error the versioning layer raises."""


class RefNotFoundError(VersioningError):
    """A branch, tag or commit id does not exist."""


class RefExistsError(VersioningError):
    """A branch or tag with this name already exists."""


class ObjectNotFoundError(VersioningError):
    """The path does not exist at the given ref."""


class InvalidNameError(VersioningError, ValueError):
    """A branch/tag name or object path is not acceptable."""


class NoChangesError(VersioningError):
    """``commit`` was called with nothing staged and ``allow_empty=False``."""


class UncommittedChangesError(VersioningError):
    """The operation needs a clean branch (merge destination) but it has staged changes."""


class LockTimeoutError(VersioningError):
    """Another writer held the repository lock for longer than the configured timeout."""


class MergeConflictError(VersioningError):
    """Both sides changed the same paths differently since their merge base."""

    def __init__(self, source: str, destination: str, paths: list[str]) -> None:
        self.source = source
        self.destination = destination
        self.paths = sorted(paths)
        shown = ", ".join(self.paths[:20]) + (" ..." if len(self.paths) > 20 else "")
        super().__init__(
            f"merge of {source!r} into {destination!r} has {len(self.paths)} conflicting "
            f"path(s): {shown}"
        )


class BackendUnavailableError(VersioningError):
    """The backend could not be reached or refused us; the message names the endpoint only.

    ``attempts`` is how many times the request was sent when retries were exhausted (``None``
    when the error did not come from retrying)."""

    def __init__(self, endpoint: str, message: str, *, attempts: int | None = None) -> None:
        self.endpoint = endpoint
        self.attempts = attempts
        super().__init__(message)


class AuthenticationError(BackendUnavailableError):
    """The backend rejected the credentials (HTTP 401)."""


class PermissionDeniedError(AuthenticationError):
    """The credentials are valid but may not do this operation (an HTTP 403 that is not branch
    protection): a policy to change, not a branch to work around. An :class:`AuthenticationError`
    so code that treats any refusal by the server alike keeps doing so."""


class ProtectedBranchError(VersioningError):
    """The server refused a write, commit or merge because the branch is protected or the
    repository is read-only (lakeFS: HTTP 403 "cannot write to protected branch", "cannot commit
    to protected branch", "read-only repository").

    Retrying cannot help, so the message says what can: commit on another branch and merge it,
    or have the protection rules changed. ``reason`` is the server's own message."""

    def __init__(
        self,
        branch: str | None,
        operation: str,
        reason: str,
        *,
        where: str,
        read_only: bool = False,
    ) -> None:
        self.branch = branch
        self.operation = operation
        self.reason = reason
        self.read_only = read_only
        if read_only:
            what = "the repository is read-only"
            fix = "nothing can be written to it until a lakeFS admin makes it writable"
        else:
            what = f"branch {branch!r} is protected" if branch else "the branch is protected"
            if operation.startswith("merge"):
                fix = (
                    "publishing needs a merge the protection rules allow: ask a lakeFS admin to "
                    f"change the branch protection rules of {branch!r} (lakectl branch-protect), "
                    "or publish to another branch"
                )
            else:
                fix = (
                    f"write and commit on another branch and merge it into {branch!r}, or ask a "
                    "lakeFS admin to change the branch protection rules (lakectl branch-protect)"
                )
        super().__init__(f"{operation} refused in {where}: {what} ({reason}); {fix}")


class HookFailedError(VersioningError):
    """A server-side hook (lakeFS pre-commit / pre-merge action, HTTP 412) rejected the
    operation. ``hook_message`` is the hook's output as the server sent it, verbatim: it is
    the only place that says what the hook objected to."""

    def __init__(
        self, operation: str, branch: str | None, hook_message: str, *, where: str
    ) -> None:
        self.operation = operation
        self.branch = branch
        self.hook_message = hook_message
        on = f" (branch {branch!r})" if branch and repr(branch) not in operation else ""
        # the hook's words last: they are often several lines
        super().__init__(
            f"{operation}{on} was rejected by a hook in {where}; fix what the hook reports (or "
            f"the hook itself) and run again. The hook said: {hook_message.strip()}"
        )


class CommitConflictError(VersioningError):
    """A commit lost a race (HTTP 409 on commit): the branch moved, or a commit with this
    content was being created, while ours was in flight. Nothing was committed; the staged
    changes are still on the branch."""

    def __init__(self, branch: str, reason: str, *, where: str) -> None:
        self.branch = branch
        self.reason = reason
        super().__init__(
            f"commit on branch {branch!r} in {where} conflicted with a concurrent change "
            f"({reason}); the staged changes are still on the branch: check that no other "
            "writer uses it, then commit again"
        )


@dataclass(frozen=True)
class ObjectEntry:
    path: str
    size: int
    checksum: str


@dataclass(frozen=True)
class Commit:
    id: str
    message: str
    metadata: dict[str, str]
    created_at: datetime
    parents: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Change:
    path: str
    type: ChangeType


def validate_path(path: str) -> str:
    """Object paths follow the object store's key rules, so a dataset can be exported 1:1."""
    try:
        return validate_key(path)
    except InvalidKeyError as e:
        raise InvalidNameError(str(e)) from None


def validate_prefix(prefix: str) -> str:
    try:
        return validate_key(prefix, allow_prefix=True)
    except InvalidKeyError as e:
        raise InvalidNameError(str(e)) from None


def validate_ref_name(name: str, kind: str = "branch") -> str:
    """Names must be valid lakeFS ids and must not look like a commit id (that would shadow it)."""
    if not isinstance(name, str) or not _REF_NAME.fullmatch(name):
        raise InvalidNameError(
            f"invalid {kind} name {name!r}: use letters, digits, '_' and '-' (max 256)"
        )
    if _COMMIT_ID.fullmatch(name):
        raise InvalidNameError(f"invalid {kind} name {name!r}: it looks like a commit id")
    return name


def validate_lakefs_repository_name(name: str) -> str:
    """lakeFS answers 400 to any other repository name; say which rule, before a request."""
    if not isinstance(name, str) or not _LAKEFS_REPOSITORY.fullmatch(name):
        raise InvalidNameError(
            f"invalid lakeFS repository name {name!r}: lakeFS requires 3-63 characters of "
            "lowercase letters, digits and '-', starting with a letter or digit "
            f"({_LAKEFS_REPOSITORY.pattern})"
        )
    return name


def looks_like_commit_id(ref: str) -> bool:
    return bool(_COMMIT_ID.fullmatch(ref))


class VersionStore(ABC):
    """One repository of versioned objects. The contract: docs/versioning.md."""

    repository: str
    default_branch: str = DEFAULT_BRANCH

    # repository -----------------------------------------------------------------------------
    @abstractmethod
    def create_repository(self, name: str | None = None) -> None:
        """Create ``name`` (default: the bound repository) with its default branch; idempotent."""

    @abstractmethod
    def repository_exists(self, name: str | None = None) -> bool: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, for logs and asset metadata; never contains a secret."""

    # branches -------------------------------------------------------------------------------
    @abstractmethod
    def create_branch(self, name: str, source_ref: str = DEFAULT_BRANCH) -> str:
        """Branch from the committed state of ``source_ref``; returns the new head commit id."""

    @abstractmethod
    def delete_branch(self, name: str) -> None: ...

    @abstractmethod
    def list_branches(self) -> list[str]:
        """Branch names, sorted."""

    @abstractmethod
    def branch_head(self, name: str) -> str:
        """The commit id the branch points to (staged changes are not part of it)."""

    # objects --------------------------------------------------------------------------------
    @abstractmethod
    def put_object(self, branch: str, path: str, data: bytes) -> ObjectEntry: ...

    def put_objects(self, branch: str, objects: Mapping[str, bytes]) -> list[ObjectEntry]:
        """Stage many objects; backends override this when they can batch."""
        return [self.put_object(branch, path, data) for path, data in objects.items()]

    @abstractmethod
    def get_object(self, ref: str, path: str) -> bytes:
        """Read ``path`` at a branch (staged view), tag or commit id."""

    @abstractmethod
    def list_objects(self, ref: str, prefix: str = "") -> list[ObjectEntry]:
        """Objects under ``prefix`` at ``ref``, sorted by path (recursive, no delimiter)."""

    @abstractmethod
    def delete_object(self, branch: str, path: str) -> None: ...

    @abstractmethod
    def uncommitted(self, branch: str) -> list[Change]:
        """Staged changes on ``branch`` relative to its head commit."""

    # commits & merges -----------------------------------------------------------------------
    @abstractmethod
    def commit(
        self,
        branch: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        *,
        allow_empty: bool = False,
    ) -> Commit: ...

    @abstractmethod
    def merge(
        self,
        source_ref: str,
        dest_branch: str,
        message: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Merge committed ``source_ref`` into ``dest_branch``; returns the new destination head."""

    # tags & history -------------------------------------------------------------------------
    @abstractmethod
    def create_tag(self, name: str, ref: str) -> str:
        """Tag the commit ``ref`` resolves to; returns that commit id. Tags never move."""

    @abstractmethod
    def list_tags(self) -> dict[str, str]:
        """Tag name -> commit id."""

    @abstractmethod
    def resolve_ref(self, ref: str) -> str:
        """Branch, tag or commit id -> commit id (a branch resolves to its head commit)."""

    @abstractmethod
    def get_commit(self, ref: str) -> Commit: ...

    @abstractmethod
    def log(self, ref: str, limit: int = 100) -> list[Commit]:
        """Commits reachable from ``ref``, newest first."""

    @abstractmethod
    def diff(self, left_ref: str, right_ref: str) -> list[Change]:
        """What changes from ``left_ref`` to ``right_ref`` (committed states), sorted by path."""

    # retention and garbage collection (issue 17; docs/maintenance.md) ------------------------
    @abstractmethod
    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether the commit ``ancestor`` resolves to is reachable from ``descendant`` (a ref
        is its own ancestor). Branch retention asks it to tell a merged run branch (its head
        is in ``main``'s history) from one whose commits exist nowhere else."""

    def collect_garbage(self, *, grace_s: float) -> GarbageCollection | None:
        """Delete stored data nothing references any more (no branch head, tag or staging
        area reaches it) and that is older than ``grace_s`` seconds; ``None`` where the
        backend collects its own garbage (lakeFS runs GC as its own job)."""
        return None


@dataclass(frozen=True)
class GarbageCollection:
    """What one garbage collection of a version store removed."""

    objects_deleted: int = 0
    """Object contents (blobs) deleted."""
    trees_deleted: int = 0
    commits_deleted: int = 0
    staging_deleted: int = 0
    """Staging areas no branch points to (a crash between a ref swap and its cleanup)."""
    bytes_reclaimed: int = 0
    """Bytes of every file deleted, of all four kinds."""
    kept_young: int = 0
    """Unreferenced files left alone because they are younger than the grace period."""

    @property
    def files_deleted(self) -> int:
        kinds = (self.objects_deleted, self.trees_deleted, self.commits_deleted)
        return sum(kinds) + self.staging_deleted
