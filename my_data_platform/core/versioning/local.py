"""The embedded version store: git-like dataset versions in a local folder, no server needed.

Content-addressed and crash safe, branches are zero-copy, and several processes may write at
once (see ``docs/versioning.md`` for the layout and why). The files are handled by
:class:`~.local_storage.LocalStorage`; this module adds the version-store operations.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import re
import uuid
from collections.abc import Mapping
from datetime import datetime

from my_data_platform.core.fsutil import TEMP_PREFIX
from my_data_platform.core.versioning.base import (
    DEFAULT_BRANCH,
    Change,
    Commit,
    GarbageCollection,
    MergeConflictError,
    NoChangesError,
    ObjectEntry,
    ObjectNotFoundError,
    RefExistsError,
    RefNotFoundError,
    UncommittedChangesError,
    VersioningError,
    VersionStore,
    looks_like_commit_id,
    validate_path,
    validate_prefix,
    validate_ref_name,
)
from my_data_platform.core.versioning.local_storage import (
    LocalStorage,
    Staging,
    Tree,
    canonical_json,
    sha256_hex,
)

log = logging.getLogger(__name__)


_COMMIT_PREFIX = re.compile(r"^[0-9a-f]{6,63}$")
"""The shortest commit-id prefix resolved (lakeFS takes short ids too)."""


class LocalVersionStore(LocalStorage, VersionStore):
    """Embedded, content-addressed version store (the default backend)."""

    def describe(self) -> str:
        return f"embedded version store at {self.path}"

    def __repr__(self) -> str:
        return f"LocalVersionStore(root={str(self.root)!r}, repository={self.repository!r})"

    def _view(self, ref: str) -> Tree:
        """The objects visible at ``ref``: a branch includes its staged writes."""
        if self._is_branch(ref):
            _, tree, staged = self._branch_view(ref)
            return _overlay(tree, staged)
        return self._commit_tree(self.resolve_ref(ref))

    # ---------------------------------------------------------------- repository
    def create_repository(self, name: str | None = None) -> None:
        repo_dir = self._repo_dir(name)
        if (repo_dir / "repo.json").exists():
            return
        if repo_dir != self.path:
            LocalVersionStore(
                self.root, repo_dir.name, lock_timeout=self.lock_timeout, durable=self.durable
            ).create_repository()
            return
        for sub in ("objects", "trees", "commits", "refs/heads", "refs/tags", "staging"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        with self._locked():
            if (self.path / "repo.json").exists():
                return
            if not self._head_path(DEFAULT_BRANCH).exists():
                cid = self._write_commit(self._write_tree({}), [], "Repository created", {})
                self._sync_filesystem()
                self._write_head(DEFAULT_BRANCH, cid, uuid.uuid4().hex)
            # repo.json last: its presence means the repository is complete
            self._atomic_write(
                self.path / "repo.json", canonical_json({"default_branch": DEFAULT_BRANCH})
            )
        log.info("created repository %s", self.describe())

    def repository_exists(self, name: str | None = None) -> bool:
        return (self._repo_dir(name) / "repo.json").exists()

    # ---------------------------------------------------------------- branches
    def create_branch(self, name: str, source_ref: str = DEFAULT_BRANCH) -> str:
        validate_ref_name(name)
        self._require_repo()
        with self._locked():
            if self._head_path(name).exists():
                raise RefExistsError(f"branch {name!r} already exists")
            if self._tag_path(name).exists():
                raise RefExistsError(f"{name!r} is already a tag")
            cid = self.resolve_ref(source_ref)
            self._write_head(name, cid, uuid.uuid4().hex)
        return cid

    def delete_branch(self, name: str) -> None:
        if name == self.default_branch:
            raise VersioningError(f"the default branch {name!r} cannot be deleted")
        self._require_repo()
        with self._locked():
            if not self._is_branch(name):
                raise RefNotFoundError(f"branch {name!r} not found")
            head = self._read_head(name)
            self._head_path(name).unlink()
            self._fsync_dir(self._head_path(name).parent)
            with contextlib.suppress(FileNotFoundError):
                self._staging_path(head["staging"]).unlink()

    def list_branches(self) -> list[str]:
        self._require_repo()
        heads = self.path / "refs" / "heads"
        return sorted(p.name[: -len(".json")] for p in heads.glob("*.json"))

    def branch_head(self, name: str) -> str:
        if not self._is_branch(name):
            raise RefNotFoundError(f"branch {name!r} not found in repository {self.repository!r}")
        return self._read_head(name)["commit"]

    # ---------------------------------------------------------------- objects
    def _store_blob(self, data: bytes) -> tuple[str, int]:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"object data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        sha = sha256_hex(data)
        self._write_once(self._object_path(sha), data)
        return sha, len(data)

    def put_object(self, branch: str, path: str, data: bytes) -> ObjectEntry:
        return self.put_objects(branch, {path: data})[0]

    def put_objects(self, branch: str, objects: Mapping[str, bytes]) -> list[ObjectEntry]:
        """Blobs are written first (outside the lock), then staged in one locked append."""
        for path in objects:
            validate_path(path)
        if not self._is_branch(branch):
            raise RefNotFoundError(f"branch {branch!r} not found in repository {self.repository!r}")
        entries = [
            ObjectEntry(p, s, h)
            for p, (h, s) in ((p, self._store_blob(d)) for p, d in objects.items())
        ]
        with self._locked():
            # A blob that already existed was not rewritten; if it was unreferenced garbage,
            # a garbage collection (which holds this lock) may have deleted it since. Checked
            # under the lock, so no collection can run between this check and the staging.
            for (path, data), e in zip(objects.items(), entries, strict=True):
                if not self._object_path(e.checksum).exists():
                    log.info("re-storing %s (collected while this write was staging)", path)
                    self._write_once(self._object_path(e.checksum), bytes(data))
            head = self._read_head(branch)
            self._append_staging(
                head["staging"], [{"p": e.path, "h": e.checksum, "s": e.size} for e in entries]
            )
        return entries

    def get_object(self, ref: str, path: str) -> bytes:
        validate_path(path)
        entry = self._view(ref).get(path)
        if entry is None:
            raise ObjectNotFoundError(f"object {path!r} not found at ref {ref!r}")
        try:
            return self._object_path(entry[0]).read_bytes()
        except FileNotFoundError:
            raise VersioningError(
                f"object {path!r} at {ref!r} points to missing content {entry[0]}: store corrupt"
            ) from None

    def list_objects(self, ref: str, prefix: str = "") -> list[ObjectEntry]:
        validate_prefix(prefix)
        view = self._view(ref)
        return [ObjectEntry(p, s, h) for p, (h, s) in sorted(view.items()) if p.startswith(prefix)]

    def delete_object(self, branch: str, path: str) -> None:
        validate_path(path)
        with self._locked():
            if not self._is_branch(branch):
                raise RefNotFoundError(f"branch {branch!r} not found")
            _, tree, staged = self._branch_view(branch)
            if path not in _overlay(tree, staged):
                return
            self._append_staging(self._read_head(branch)["staging"], [{"p": path, "h": None}])

    def uncommitted(self, branch: str) -> list[Change]:
        if not self._is_branch(branch):
            raise RefNotFoundError(f"branch {branch!r} not found")
        _, tree, staged = self._branch_view(branch)
        return _diff_trees(tree, _overlay(tree, staged))

    # ---------------------------------------------------------------- commit & merge
    def commit(
        self,
        branch: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        *,
        allow_empty: bool = False,
    ) -> Commit:
        with self._locked():
            if not self._is_branch(branch):
                raise RefNotFoundError(f"branch {branch!r} not found")
            head = self._read_head(branch)
            tree = self._commit_tree(head["commit"])
            new_tree = _overlay(tree, self._read_staging(head["staging"]))
            if new_tree == tree and not allow_empty:
                raise NoChangesError(f"nothing to commit on branch {branch!r}")
            # order matters for crash safety: tree, commit, sync, then the ref swap
            tree_id = self._write_tree(new_tree)
            cid = self._write_commit(tree_id, [head["commit"]], message, metadata)
            self._sync_filesystem()
            self._write_head(branch, cid, uuid.uuid4().hex)
            with contextlib.suppress(FileNotFoundError):
                self._staging_path(head["staging"]).unlink()
        log.info("committed %s on %s/%s", cid[:12], self.repository, branch)
        return self._to_commit(cid)

    def _move_clean_head(self, branch: str, commit_id: str, old_staging: str) -> None:
        """The staging area of a clean branch may still hold no-op records (a write undone by a
        delete); against a new head they would mean something, so start a fresh one."""
        self._write_head(branch, commit_id, uuid.uuid4().hex)
        with contextlib.suppress(FileNotFoundError):
            self._staging_path(old_staging).unlink()

    def _ancestors(self, cid: str) -> set[str]:
        seen: set[str] = set()
        stack = [cid]
        while stack:
            c = stack.pop()
            if c in seen:
                continue
            seen.add(c)
            stack.extend(self._read_commit_raw(c)["parents"])
        return seen

    def merge_base(self, left: str, right: str) -> str | None:
        """The common ancestor with the highest generation (the most recent one)."""
        common = self._ancestors(left) & self._ancestors(right)
        if not common:
            return None
        return max(common, key=lambda c: (self._read_commit_raw(c)["generation"], c))

    def _merge_sides(self, source_ref: str, dest_branch: str) -> tuple[str, dict[str, str], Tree]:
        """The source commit, the destination's head record and its committed tree, once the
        destination is known to be a clean branch (call under the lock)."""
        src = self.resolve_ref(source_ref)
        if not self._is_branch(dest_branch):
            raise RefNotFoundError(f"destination branch {dest_branch!r} not found")
        head = self._read_head(dest_branch)
        dst_tree = self._commit_tree(head["commit"])
        if _overlay(dst_tree, self._read_staging(head["staging"])) != dst_tree:
            raise UncommittedChangesError(
                f"branch {dest_branch!r} has uncommitted changes; commit or reset them "
                "before merging into it"
            )
        return src, head, dst_tree

    def merge(
        self,
        source_ref: str,
        dest_branch: str,
        message: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        with self._locked():
            src, head, dst_tree = self._merge_sides(source_ref, dest_branch)
            dst = head["commit"]
            base = self.merge_base(src, dst)
            if base == src:  # already contained (includes src == dst)
                return dst
            if base == dst:  # fast-forward: the destination just moves
                self._move_clean_head(dest_branch, src, head["staging"])
                return src
            base_tree = self._commit_tree(base) if base else {}
            merged, conflicts = _three_way(base_tree, self._commit_tree(src), dst_tree)
            if conflicts:
                raise MergeConflictError(source_ref, dest_branch, conflicts)
            if merged == dst_tree:
                return dst
            cid = self._write_commit(
                self._write_tree(merged),
                [dst, src],
                message or f"Merge '{source_ref}' into '{dest_branch}'",
                metadata,
            )
            self._sync_filesystem()
            self._move_clean_head(dest_branch, cid, head["staging"])
        return cid

    # ---------------------------------------------------------------- tags & history
    def create_tag(self, name: str, ref: str) -> str:
        validate_ref_name(name, "tag")
        self._require_repo()
        with self._locked():
            if self._tag_path(name).exists():
                raise RefExistsError(f"tag {name!r} already exists")
            if self._head_path(name).exists():
                raise RefExistsError(f"{name!r} is already a branch")
            cid = self.resolve_ref(ref)
            self._atomic_write(self._tag_path(name), cid.encode())
        return cid

    def list_tags(self) -> dict[str, str]:
        self._require_repo()
        tags = {}
        for p in sorted((self.path / "refs" / "tags").iterdir()):
            if not p.name.startswith(TEMP_PREFIX):
                tags[p.name] = p.read_text().strip()
        return tags

    def resolve_ref(self, ref: str) -> str:
        if not isinstance(ref, str) or not ref:
            raise RefNotFoundError(f"invalid ref {ref!r}")
        self._require_repo()
        if looks_like_commit_id(ref):
            if self._commit_path(ref).exists():
                return ref
        elif self._valid_name(ref):
            if self._head_path(ref).exists():
                return self._read_head(ref)["commit"]
            tag = self._tag_path(ref)
            if tag.exists():
                return tag.read_text().strip()
        if _COMMIT_PREFIX.fullmatch(ref):
            return self._commit_by_prefix(ref)
        raise RefNotFoundError(f"ref {ref!r} not found in repository {self.repository!r}")

    def _commit_by_prefix(self, prefix: str) -> str:
        """A unique commit-id prefix (as ``mdp datasets log`` shows: 12 digits), as lakeFS
        resolves short commit ids; ambiguous or unknown prefixes are not found."""
        folder = self.path / "commits" / prefix[:2]
        found = sorted(
            prefix[:2] + p.name.removesuffix(".json")
            for p in (folder.glob(f"{prefix[2:]}*.json") if folder.is_dir() else [])
        )
        found = [c for c in found if looks_like_commit_id(c)]
        if len(found) == 1:
            return found[0]
        if found:
            raise RefNotFoundError(
                f"commit prefix {prefix!r} is ambiguous in repository {self.repository!r} "
                f"({len(found)} commits: {', '.join(c[:16] for c in found[:5])}); give more digits"
            )
        raise RefNotFoundError(f"ref {prefix!r} not found in repository {self.repository!r}")

    def get_commit(self, ref: str) -> Commit:
        return self._to_commit(self.resolve_ref(ref))

    def log(self, ref: str, limit: int = 100) -> list[Commit]:
        """Newest first: by generation (a child always after its parents), then time."""
        start = self.resolve_ref(ref)
        out: list[Commit] = []
        seen = {start}
        heap: list[tuple[int, str, str]] = []

        def push(cid: str) -> None:
            raw = self._read_commit_raw(cid)
            heapq.heappush(heap, (-raw["generation"], _neg_time(raw["created_at"]), cid))

        push(start)
        while heap and len(out) < limit:
            _, _, cid = heapq.heappop(heap)
            out.append(self._to_commit(cid))
            for parent in self._read_commit_raw(cid)["parents"]:
                if parent not in seen:
                    seen.add(parent)
                    push(parent)
        return out

    def diff(self, left_ref: str, right_ref: str) -> list[Change]:
        return _diff_trees(
            self._commit_tree(self.resolve_ref(left_ref)),
            self._commit_tree(self.resolve_ref(right_ref)),
        )

    # ---------------------------------------------------------------- retention & GC (issue 17)
    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Walks back from ``descendant``; commits of a lower generation than ``ancestor``
        cannot lead to it, so the walk stops there instead of reading all of history."""
        target = self.resolve_ref(ancestor)
        start = self.resolve_ref(descendant)
        floor = self._read_commit_raw(target)["generation"]
        seen: set[str] = set()
        stack = [start]
        while stack:
            cid = stack.pop()
            if cid == target:
                return True
            if cid in seen:
                continue
            seen.add(cid)
            raw = self._read_commit_raw(cid)
            if raw["generation"] > floor:
                stack.extend(raw["parents"])
        return False

    def collect_garbage(self, *, grace_s: float, now: float | None = None) -> GarbageCollection:
        """Delete the objects, trees, commits and staging areas that no branch head, tag or
        staging area reaches and that were last written more than ``grace_s`` seconds ago.

        Holds the repository lock from the marking to the last delete, so no ref moves and no
        write is staged meanwhile; :meth:`put_objects` re-checks its blobs under the same lock
        (a blob it found already stored may have been unreferenced garbage collected since).
        The grace period covers blobs written but not yet staged. Crash safe: only
        unreachable files are deleted, commits before their trees before their objects, so
        a killed collection leaves garbage for the next one and every ref still reads. A
        reference to a missing or unreadable record aborts it before anything is deleted."""
        self._require_repo()
        with self._locked():
            report = self._collect_garbage(grace_s=grace_s, now=now)
        with self._cache_lock:
            self._cache.clear()
        log.info(
            "garbage collection of %s: %d objects, %d trees, %d commits, %d staging areas, "
            "%d bytes", self.describe(), report.objects_deleted, report.trees_deleted,
            report.commits_deleted, report.staging_deleted, report.bytes_reclaimed,
        )  # fmt: skip
        return report


def _overlay(tree: Tree, staged: Staging) -> Tree:
    out = dict(tree)
    for p, v in staged.items():
        if v is None:
            out.pop(p, None)
        else:
            out[p] = v
    return out


def _neg_time(iso: str) -> float:
    return -datetime.fromisoformat(iso).timestamp()


def _diff_trees(left: Tree, right: Tree) -> list[Change]:
    changes: list[Change] = []
    for path in sorted(left.keys() | right.keys()):
        lv, rv = left.get(path), right.get(path)
        if lv == rv:
            continue
        if lv is None:
            changes.append(Change(path, "added"))
        elif rv is None:
            changes.append(Change(path, "removed"))
        elif lv[0] != rv[0]:
            changes.append(Change(path, "changed"))
    return changes


def _three_way(base: Tree, source: Tree, dest: Tree) -> tuple[Tree, list[str]]:
    """Object-level three-way merge: a side that did not change a path yields to the other;
    both changing it the same way is fine; both changing it differently is a conflict."""
    merged: Tree = {}
    conflicts: list[str] = []
    for path in base.keys() | source.keys() | dest.keys():
        b, s, d = base.get(path), source.get(path), dest.get(path)
        s_id, d_id, b_id = (s and s[0]), (d and d[0]), (b and b[0])
        if s_id in (d_id, b_id):
            result = d
        elif d_id == b_id:
            result = s
        else:
            conflicts.append(path)
            continue
        if result is not None:
            merged[path] = result
    return merged, sorted(conflicts)
