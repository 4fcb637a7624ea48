"""The production backend: lakeFS through its official Python SDK (``lakefs``).

The pipeline codes against :class:`VersionStore`, so the embedded store and lakeFS are
interchangeable; the SDK calls, retries and error translation are in :mod:`.lakefs_connection`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import lakefs
from lakefs.exceptions import (
    BadRequestException,
    ConflictException,
    NotFoundException,
    ServerException,
)

from my_data_platform.core.versioning.base import (
    DEFAULT_BRANCH,
    Change,
    Commit,
    CommitConflictError,
    MergeConflictError,
    NoChangesError,
    ObjectEntry,
    ObjectNotFoundError,
    RefExistsError,
    RefNotFoundError,
    VersioningError,
    VersionStore,
    validate_path,
    validate_prefix,
    validate_ref_name,
)
from my_data_platform.core.versioning.lakefs_connection import (
    ENV_ACCESS_KEY_ID,
    ENV_ENDPOINT,
    ENV_REPOSITORY,
    ENV_SECRET_ACCESS_KEY,
    ENV_STORAGE_NAMESPACE,
    Absent,
    LakeFSConnection,
    changes_from,
    error_message,
)

log = logging.getLogger(__name__)


class LakeFSVersionStore(LakeFSConnection, VersionStore):
    """lakeFS backend; one instance is bound to one repository."""

    @classmethod
    def from_env(cls, env: Mapping[str, str], **kwargs: Any) -> LakeFSVersionStore:
        """Build from a mapping of ``LAKEFS_ENDPOINT``, ``LAKEFS_ACCESS_KEY_ID``,
        ``LAKEFS_SECRET_ACCESS_KEY``, ``MDP_LAKEFS_REPOSITORY`` and (optional)
        ``MDP_LAKEFS_STORAGE_NAMESPACE``; the caller reads the environment (``settings``)."""
        missing = [
            n for n in (ENV_ENDPOINT, ENV_ACCESS_KEY_ID, ENV_SECRET_ACCESS_KEY) if not env.get(n)
        ]
        if missing:
            raise VersioningError(f"lakeFS is not configured: set {', '.join(missing)}")
        return cls(
            env[ENV_ENDPOINT],
            env[ENV_ACCESS_KEY_ID],
            env[ENV_SECRET_ACCESS_KEY],
            env.get(ENV_REPOSITORY) or "datasets",
            storage_namespace=env.get(ENV_STORAGE_NAMESPACE) or None,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"LakeFSVersionStore(endpoint={self.endpoint!r}, repository={self.repository!r})"

    # ---------------------------------------------------------------- repository
    def create_repository(self, name: str | None = None) -> None:
        name = validate_ref_name(name or self.repository, "repository")
        if self.repository_exists(name):
            return
        if not self.storage_namespace:
            raise VersioningError(
                f"repository {name!r} does not exist in lakeFS at {self.endpoint} and no storage "
                f"namespace is configured to create it (set {ENV_STORAGE_NAMESPACE})"
            )
        repo = lakefs.Repository(name, client=self._client)
        self._call(
            f"create repository {name!r}",
            lambda: repo.create(self.storage_namespace, DEFAULT_BRANCH, exist_ok=True),
        )
        log.info("created lakeFS repository %s at %s", name, self.endpoint)

    def repository_exists(self, name: str | None = None) -> bool:
        name = name or self.repository
        sdk = self._client.sdk_client

        def missing(e: ServerException) -> Exception | None:
            return Absent() if isinstance(e, NotFoundException) else None

        try:
            self._call(
                f"get repository {name!r}",
                lambda: sdk.repositories_api.get_repository(name),
                on_error=missing,
            )
        except Absent:
            return False
        return True

    # ---------------------------------------------------------------- branches
    def create_branch(self, name: str, source_ref: str = DEFAULT_BRANCH) -> str:
        validate_ref_name(name)
        branch = self._repo.branch(name)

        def err(e: ServerException) -> Exception | None:
            if isinstance(e, ConflictException):
                return RefExistsError(f"branch {name!r} already exists in {self.describe()}")
            if isinstance(e, NotFoundException):
                return RefNotFoundError(f"source ref {source_ref!r} not found in {self.describe()}")
            return None

        self._call(
            f"create branch {name!r}",
            lambda: branch.create(source_ref),
            on_error=err,
            branch=name,
        )
        return self.branch_head(name)

    def delete_branch(self, name: str) -> None:
        if name == self.default_branch:
            raise VersioningError(f"the default branch {name!r} cannot be deleted")
        branch = self._repo.branch(name)
        self._call(
            f"delete branch {name!r}",
            branch.delete,
            on_error=self._ref_missing("branch", name),
            branch=name,
        )

    def list_branches(self) -> list[str]:
        sdk = self._client.sdk_client
        refs = self._call(
            "list branches", lambda: self._listing(sdk.branches_api.list_branches, self.repository)
        )
        return sorted(r.id for r in refs)

    def branch_head(self, name: str) -> str:
        sdk = self._client.sdk_client
        ref = self._call(
            f"get branch {name!r}",
            lambda: sdk.branches_api.get_branch(self.repository, name),
            on_error=self._ref_missing("branch", name),
        )
        return ref.commit_id

    # ---------------------------------------------------------------- objects
    def put_object(self, branch: str, path: str, data: bytes) -> ObjectEntry:
        validate_path(path)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"object data must be bytes, got {type(data).__name__}")
        obj = self._repo.branch(branch).object(path)

        def upload() -> Any:
            # pre_sign=False: the bytes go through lakeFS, no direct-to-bucket credentials needed
            with obj.writer(mode="wb", pre_sign=False) as writer:
                writer.write(bytes(data))
            return getattr(writer, "_obj_stats", None) or obj.stat()

        stats = self._call(
            f"upload {path!r} to branch {branch!r}",
            upload,
            on_error=self._ref_missing("branch", branch),
            branch=branch,
        )
        return ObjectEntry(
            path=path, size=int(stats.size_bytes or len(data)), checksum=stats.checksum
        )

    def get_object(self, ref: str, path: str) -> bytes:
        validate_path(path)
        obj = self._repo.ref(ref).object(path)

        def read() -> bytes:
            with obj.reader(mode="rb", pre_sign=False) as reader:
                return bytes(reader.read())

        try:
            return self._call(f"read {path!r} at {ref!r}", read)
        except RefNotFoundError:
            self.resolve_ref(ref)  # raises RefNotFoundError when the ref is the missing part
            raise ObjectNotFoundError(
                f"object {path!r} not found at ref {ref!r} in {self.describe()}"
            ) from None

    def list_objects(self, ref: str, prefix: str = "") -> list[ObjectEntry]:
        validate_prefix(prefix)
        sdk = self._client.sdk_client
        stats = self._call(
            f"list objects at {ref!r}",
            lambda: self._listing(
                sdk.objects_api.list_objects,
                repository=self.repository,
                ref=ref,
                prefix=prefix,
                delimiter="",
            ),
            on_error=self._ref_missing("ref", ref),
        )
        return sorted(
            (
                ObjectEntry(s.path, int(s.size_bytes or 0), s.checksum)
                for s in stats
                if s.path_type == "object"
            ),
            key=lambda e: e.path,
        )

    def delete_object(self, branch: str, path: str) -> None:
        validate_path(path)
        sdk = self._client.sdk_client
        try:
            # the API directly, not Object.delete: that drops the server's message on a 403,
            # and the message is what tells a protected branch from a missing permission
            self._call(
                f"delete {path!r} on branch {branch!r}",
                lambda: sdk.objects_api.delete_object(self.repository, branch, path),
                branch=branch,
            )
        except RefNotFoundError:
            self.branch_head(branch)  # a missing branch is an error, a missing object is not

    def uncommitted(self, branch: str) -> list[Change]:
        b = self._repo.branch(branch)
        changes = self._call(
            f"list uncommitted changes on {branch!r}",
            lambda: list(b.uncommitted(amount=self.page_size)),
            on_error=self._ref_missing("branch", branch),
        )
        return changes_from(changes)

    # ---------------------------------------------------------------- commit & merge
    def commit(
        self,
        branch: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        *,
        allow_empty: bool = False,
    ) -> Commit:
        b = self._repo.branch(branch)
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}

        def err(e: ServerException) -> Exception | None:
            if isinstance(e, NotFoundException):
                return RefNotFoundError(f"branch {branch!r} not found in {self.describe()}")
            if isinstance(e, BadRequestException) and "no changes" in error_message(e).lower():
                return NoChangesError(f"nothing to commit on branch {branch!r}")
            if isinstance(e, ConflictException):  # not "already exists": a lost race
                return CommitConflictError(branch, error_message(e), where=self.describe())
            return None

        ref = self._call(
            f"commit on branch {branch!r}",
            lambda: b.commit(message, metadata=meta, allow_empty=allow_empty),
            idempotent=False,
            on_error=err,
            branch=branch,
        )
        log.info("committed %s on %s/%s", ref.id[:12], self.repository, branch)
        return self.get_commit(ref.id)

    def merge(
        self,
        source_ref: str,
        dest_branch: str,
        message: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        src = self._repo.ref(source_ref)
        kwargs: dict[str, Any] = {}
        if message is not None:
            kwargs["message"] = message
        if metadata:
            kwargs["metadata"] = {str(k): str(v) for k, v in metadata.items()}

        def err(e: ServerException) -> Exception | None:
            if isinstance(e, ConflictException):
                return MergeConflictError(
                    source_ref, dest_branch, self._conflicting_paths(source_ref, dest_branch)
                )
            if isinstance(e, BadRequestException) and "no changes" in error_message(e).lower():
                return Absent()
            if isinstance(e, NotFoundException):
                return RefNotFoundError(
                    f"merge {source_ref!r} into {dest_branch!r}: ref not found in {self.describe()}"
                )
            return None

        try:
            return self._call(
                f"merge {source_ref!r} into {dest_branch!r}",
                lambda: src.merge_into(dest_branch, **kwargs),
                idempotent=False,
                on_error=err,
                branch=dest_branch,
            )
        except Absent:  # nothing to merge: the destination already has it
            return self.branch_head(dest_branch)

    def _conflicting_paths(self, source_ref: str, dest_branch: str) -> list[str]:
        """lakeFS reports *that* a merge conflicts, not *where*: recompute it from the merge
        base, the same rule the server applies (both sides changed a path differently)."""
        sdk = self._client.sdk_client
        try:
            mb = self._call(
                "find merge base",
                lambda: sdk.refs_api.find_merge_base(self.repository, source_ref, dest_branch),
            )
            src_changes = {
                c.path: c.type for c in self._diff_raw(mb.base_commit_id, mb.source_commit_id)
            }
            dst_changes = {
                c.path: c.type for c in self._diff_raw(mb.base_commit_id, mb.destination_commit_id)
            }
            paths = []
            for path in sorted(src_changes.keys() & dst_changes.keys()):
                if src_changes[path] == dst_changes[path] == "removed":
                    continue
                if self._checksum(mb.source_commit_id, path) != self._checksum(
                    mb.destination_commit_id, path
                ):
                    paths.append(path)
            return paths
        except VersioningError as e:  # the conflict itself must still be reported
            log.warning("could not list the conflicting paths: %s", e)
            return []

    def _checksum(self, ref: str, path: str) -> str | None:
        sdk = self._client.sdk_client
        with contextlib.suppress(RefNotFoundError):
            return self._call(
                f"stat {path!r}",
                lambda: sdk.objects_api.stat_object(self.repository, ref, path).checksum,
            )
        return None

    # ---------------------------------------------------------------- tags & history
    def create_tag(self, name: str, ref: str) -> str:
        validate_ref_name(name, "tag")
        tag = self._repo.tag(name)

        def err(e: ServerException) -> Exception | None:
            if isinstance(e, ConflictException):
                return RefExistsError(f"tag {name!r} already exists in {self.describe()}")
            if isinstance(e, NotFoundException):
                return RefNotFoundError(f"ref {ref!r} not found in {self.describe()}")
            return None

        self._call(f"create tag {name!r}", lambda: tag.create(ref), on_error=err)
        return self.resolve_ref(name)

    def list_tags(self) -> dict[str, str]:
        sdk = self._client.sdk_client
        refs = self._call(
            "list tags", lambda: self._listing(sdk.tags_api.list_tags, self.repository)
        )
        return {r.id: r.commit_id for r in sorted(refs, key=lambda r: r.id)}

    def resolve_ref(self, ref: str) -> str:
        return self.get_commit(ref).id

    def get_commit(self, ref: str) -> Commit:
        sdk = self._client.sdk_client
        c = self._call(
            f"get commit {ref!r}",
            lambda: sdk.commits_api.get_commit(self.repository, ref),
            on_error=self._ref_missing("ref", ref),
        )
        return self._to_commit(c)

    def log(self, ref: str, limit: int = 100) -> list[Commit]:
        reference = self._repo.ref(ref)
        page = min(max(limit, 1), self.page_size)
        commits = self._call(
            f"log {ref!r}",
            lambda: list(reference.log(max_amount=limit, amount=page)),
            on_error=self._ref_missing("ref", ref),
        )
        return [self._to_commit(c) for c in commits]

    def _diff_raw(self, left: str, right: str) -> list[Any]:
        reference = self._repo.ref(left)
        return self._call(
            f"diff {left!r}..{right!r}",
            # two_dot: compare the two trees directly (lakeFS defaults to three_dot)
            lambda: list(reference.diff(right, type="two_dot", amount=self.page_size)),
            on_error=self._ref_missing("ref", f"{left}..{right}"),
        )

    def diff(self, left_ref: str, right_ref: str) -> list[Change]:
        # resolve first: a branch name must mean its head commit, not its staging area
        return changes_from(self._diff_raw(self.resolve_ref(left_ref), self.resolve_ref(right_ref)))

    # ---------------------------------------------------------------- retention & GC (issue 17)
    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """lakeFS's merge base of the two: ``ancestor`` is in ``descendant``'s history exactly
        when it is their merge base. One request, however long the history. The API names
        the second ref ``destinationBranch``; where a server refuses a commit id there (or
        finds no merge base), the answer comes from ``descendant``'s log instead."""
        target = self.resolve_ref(ancestor)
        if target == self.resolve_ref(descendant):
            return True
        sdk = self._client.sdk_client

        def none(e: ServerException) -> Exception | None:
            return Absent() if isinstance(e, NotFoundException) else None

        try:
            mb = self._call(
                f"find merge base of {ancestor!r} and {descendant!r}",
                lambda: sdk.refs_api.find_merge_base(self.repository, target, descendant),
                on_error=none,
            )
        except Absent:
            return any(c.id == target for c in self.log(descendant, limit=100_000))
        return mb.base_commit_id == target

    def collect_garbage(self, *, grace_s: float) -> None:
        """lakeFS deletes unreferenced data with its own garbage-collection job (a Spark job
        run outside lakeFS, under the repository's GC rules); docs/maintenance.md."""
        return None
