"""The embedded version store: git-like dataset versions in a local folder, no server needed.

Layout under ``<root>/<repository>/``::

    repo.json                 default branch
    objects/ab/<sha256>       object bytes, content-addressed (stored once)
    trees/ab/<sha256>.json    a commit's manifest {path: [sha256, size]}, content-addressed
    commits/ab/<sha256>.json  {tree, parents, message, metadata, created_at, generation}
    refs/heads/<branch>.json  {"commit": id, "staging": staging id}
    refs/tags/<tag>           commit id
    staging/<id>.jsonl        the branch's uncommitted writes, one JSON line per put/delete
    lock                      flock'd around every ref/staging update

Why it is crash safe: everything a ref points to is written (temp file + ``os.replace``) before
the ref moves, and moving a ref is one ``os.replace``. A commit writes its tree, then its commit
file, then swaps the branch ref to ``{new commit, fresh staging id}`` in one step. A kill at any
point leaves either the old ref (plus unreachable garbage) or the new one. Commit and tree ids
are hashes of their content, so a half-written file can never be mistaken for a valid one
(:meth:`LocalVersionStore.check_consistency` re-hashes them).

Why it is safe with several processes: ref and staging updates run under an exclusive
``fcntl.flock`` on ``lock``; a second writer waits up to ``lock_timeout`` seconds and then gets
:class:`LockTimeoutError`. Object bytes are written outside the lock (content addressing makes
concurrent writes of the same object harmless).

Branches are zero-copy: creating one writes a single small ref file whatever the data size.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import heapq
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from my_data_platform.core.fsutil import (
    TEMP_PREFIX,
    LockTimeout,
    atomic_write_bytes,
    file_lock,
    fsync_dir,
)
from my_data_platform.core.versioning.base import (
    DEFAULT_BRANCH,
    Change,
    Commit,
    InvalidNameError,
    LockTimeoutError,
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

log = logging.getLogger(__name__)


def _load_syncfs() -> Any:
    """``syncfs(2)`` flushes one filesystem; Python has no wrapper, ``os.sync`` is the fallback."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()

# path -> (sha256, size); a staged value of None is a deletion (tombstone)
Tree = dict[str, tuple[str, int]]
Staging = dict[str, tuple[str, int] | None]


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalVersionStore(VersionStore):
    """Embedded, content-addressed version store (the default backend)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        repository: str = "datasets",
        *,
        lock_timeout: float = 60.0,
        durable: bool = True,
    ) -> None:
        """``durable`` makes a commit survive a power loss, not only a process crash: the
        filesystem is synced once before the ref moves (one ``syncfs`` per commit is far
        cheaper than an fsync per object), and ref files are fsynced. Staged, uncommitted
        writes are not synced. Turn it off for throwaway stores (tests)."""
        self.root = Path(root)
        self.repository = validate_ref_name(repository, "repository")
        self.lock_timeout = lock_timeout
        self.durable = durable
        self._tls = threading.local()
        self._cache: dict[str, Any] = {}
        self._cache_lock = threading.Lock()
        self._dirs: set[Path] = set()

    # ---------------------------------------------------------------- paths & low-level io
    @property
    def path(self) -> Path:
        return self.root / self.repository

    def describe(self) -> str:
        return f"embedded version store at {self.path}"

    def __repr__(self) -> str:
        return f"LocalVersionStore(root={str(self.root)!r}, repository={self.repository!r})"

    def _repo_dir(self, name: str | None = None) -> Path:
        return self.root / validate_ref_name(name, "repository") if name else self.path

    def _object_path(self, sha: str) -> Path:
        return self.path / "objects" / sha[:2] / sha[2:]

    def _tree_path(self, tid: str) -> Path:
        return self.path / "trees" / tid[:2] / f"{tid[2:]}.json"

    def _commit_path(self, cid: str) -> Path:
        return self.path / "commits" / cid[:2] / f"{cid[2:]}.json"

    def _head_path(self, branch: str) -> Path:
        return self.path / "refs" / "heads" / f"{branch}.json"

    def _tag_path(self, tag: str) -> Path:
        return self.path / "refs" / "tags" / tag

    def _staging_path(self, sid: str) -> Path:
        return self.path / "staging" / f"{sid}.jsonl"

    def _fsync_dir(self, d: Path) -> None:
        if self.durable:
            fsync_dir(d)

    def _sync_filesystem(self) -> None:
        """Flush everything written so far (objects, trees, commits) in one call."""
        if not self.durable:
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if _syncfs is None or _syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    def _atomic_write(self, target: Path, data: bytes, *, sync: bool = True) -> None:
        """Readers see the old file or the new one, never a partial write."""
        new_dir = target.parent not in self._dirs  # saves a mkdir syscall per object
        atomic_write_bytes(target, data, fsync=sync and self.durable, make_parents=new_dir)
        self._dirs.add(target.parent)

    def _write_once(self, target: Path, data: bytes) -> None:
        """Content-addressed files are immutable: if it exists it already holds these bytes.
        Not synced here: :meth:`commit` syncs the filesystem before moving a ref."""
        if not target.exists():
            self._atomic_write(target, data, sync=False)

    # ---------------------------------------------------------------- locking
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive repository lock, re-entrant within a thread, bounded wait."""
        depth = getattr(self._tls, "depth", 0)
        if depth:
            self._tls.depth = depth + 1
            try:
                yield
            finally:
                self._tls.depth -= 1
            return
        lock_path = self.path / "lock"
        if not self.path.is_dir():
            raise RefNotFoundError(f"repository {self.repository!r} does not exist at {self.path}")
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(file_lock(lock_path, timeout=self.lock_timeout))
            except LockTimeout:
                raise LockTimeoutError(
                    f"another writer held {lock_path} for more than "
                    f"{self.lock_timeout:g}s; nothing was changed, retry later"
                ) from None
            self._tls.depth = 1
            try:
                yield
            finally:
                self._tls.depth = 0

    # ---------------------------------------------------------------- immutable records
    def _cached(self, key: str, load: Any) -> Any:
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
        value = load()
        with self._cache_lock:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = value
        return value

    def _write_tree(self, tree: Tree) -> str:
        data = _canonical({"entries": {p: [h, s] for p, (h, s) in sorted(tree.items())}})
        tid = _sha256(data)
        self._write_once(self._tree_path(tid), data)
        return tid

    def _read_tree(self, tid: str) -> Tree:
        def load() -> Tree:
            raw = json.loads(self._tree_path(tid).read_bytes())
            return {p: (h, int(s)) for p, (h, s) in raw["entries"].items()}

        return self._cached("t:" + tid, load)

    def _read_commit_raw(self, cid: str) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            try:
                return json.loads(self._commit_path(cid).read_bytes())
            except FileNotFoundError:
                raise RefNotFoundError(
                    f"commit {cid!r} not found in repository {self.repository!r}"
                ) from None

        return self._cached("c:" + cid, load)

    def _to_commit(self, cid: str) -> Commit:
        raw = self._read_commit_raw(cid)
        return Commit(
            id=cid,
            message=raw["message"],
            metadata=dict(raw["metadata"]),
            created_at=datetime.fromisoformat(raw["created_at"]),
            parents=tuple(raw["parents"]),
        )

    def _write_commit(
        self,
        tree_id: str,
        parents: list[str],
        message: str,
        metadata: Mapping[str, str] | None,
    ) -> str:
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        generation = 1 + max((self._read_commit_raw(p)["generation"] for p in parents), default=0)
        record = {
            "tree": tree_id,
            "parents": parents,
            "message": message,
            "metadata": meta,
            "created_at": datetime.now(UTC).isoformat(),
            "generation": generation,
            # two commits in the same microsecond with the same content must still differ
            "nonce": uuid.uuid4().hex,
        }
        data = _canonical(record)
        cid = _sha256(data)
        self._write_once(self._commit_path(cid), data)
        return cid

    # ---------------------------------------------------------------- refs & staging
    def _read_head(self, branch: str) -> dict[str, str]:
        try:
            return json.loads(self._head_path(branch).read_bytes())
        except FileNotFoundError:
            raise RefNotFoundError(
                f"branch {branch!r} not found in repository {self.repository!r}"
            ) from None

    def _write_head(self, branch: str, commit_id: str, staging_id: str) -> None:
        self._atomic_write(
            self._head_path(branch), _canonical({"commit": commit_id, "staging": staging_id})
        )

    def _read_staging(self, sid: str) -> Staging:
        """Later lines win. A torn last line (a writer killed mid-append) was never
        acknowledged to its caller, so it is skipped."""
        staged: Staging = {}
        try:
            raw = self._staging_path(sid).read_bytes()
        except FileNotFoundError:
            return staged
        for line in raw.split(b"\n"):
            if not line:
                continue
            try:
                rec = json.loads(line)
                staged[rec["p"]] = None if rec["h"] is None else (rec["h"], int(rec["s"]))
            except (ValueError, KeyError, TypeError):
                continue
        return staged

    def _append_staging(self, sid: str, records: list[dict[str, Any]]) -> None:
        path = self._staging_path(sid)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = b"".join(_canonical(r) + b"\n" for r in records)
        with open(path, "ab") as f:
            # a torn line left by a killed writer must not swallow our first record
            if f.tell() > 0:
                with open(path, "rb") as r:
                    r.seek(-1, os.SEEK_END)
                    if r.read(1) != b"\n":
                        payload = b"\n" + payload
            f.write(payload)

    def _branch_view(self, branch: str) -> tuple[str, Tree, Staging]:
        """A consistent (head, staging) pair without taking the lock: a commit swaps both in
        one ref write and then drops the old staging file, so re-check the ref after reading."""
        head = self._read_head(branch)
        while True:
            staged = self._read_staging(head["staging"])
            again = self._read_head(branch)
            if again == head:
                return head["commit"], self._commit_tree(head["commit"]), staged
            head = again

    def _commit_tree(self, cid: str) -> Tree:
        return self._read_tree(self._read_commit_raw(cid)["tree"])

    @staticmethod
    def _overlay(tree: Tree, staged: Staging) -> Tree:
        out = dict(tree)
        for p, v in staged.items():
            if v is None:
                out.pop(p, None)
            else:
                out[p] = v
        return out

    def _view(self, ref: str) -> Tree:
        """The objects visible at ``ref``: a branch includes its staged writes."""
        if self._is_branch(ref):
            _, tree, staged = self._branch_view(ref)
            return self._overlay(tree, staged)
        return self._commit_tree(self.resolve_ref(ref))

    def _is_branch(self, name: str) -> bool:
        return (
            not looks_like_commit_id(name)
            and self._valid_name(name)
            and (self._head_path(name).exists())
        )

    @staticmethod
    def _valid_name(name: str) -> bool:
        try:
            validate_ref_name(name)
        except InvalidNameError:
            return False
        return True

    def _require_repo(self) -> None:
        if not (self.path / "repo.json").exists():
            raise RefNotFoundError(f"repository {self.repository!r} does not exist at {self.path}")

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
                self.path / "repo.json", _canonical({"default_branch": DEFAULT_BRANCH})
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
        sha = _sha256(data)
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
            if path not in self._overlay(tree, staged):
                return
            self._append_staging(self._read_head(branch)["staging"], [{"p": path, "h": None}])

    def uncommitted(self, branch: str) -> list[Change]:
        if not self._is_branch(branch):
            raise RefNotFoundError(f"branch {branch!r} not found")
        _, tree, staged = self._branch_view(branch)
        return _diff_trees(tree, self._overlay(tree, staged))

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
            new_tree = self._overlay(tree, self._read_staging(head["staging"]))
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

    def merge(
        self,
        source_ref: str,
        dest_branch: str,
        message: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        with self._locked():
            src = self.resolve_ref(source_ref)
            if not self._is_branch(dest_branch):
                raise RefNotFoundError(f"destination branch {dest_branch!r} not found")
            head = self._read_head(dest_branch)
            dst = head["commit"]
            dst_tree = self._commit_tree(dst)
            if self._overlay(dst_tree, self._read_staging(head["staging"])) != dst_tree:
                raise UncommittedChangesError(
                    f"branch {dest_branch!r} has uncommitted changes; commit or reset them "
                    "before merging into it"
                )
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
        raise RefNotFoundError(f"ref {ref!r} not found in repository {self.repository!r}")

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

    # ---------------------------------------------------------------- checks
    def check_consistency(self, verify_content: bool = True) -> list[str]:
        """Problems that would make a ref unreadable or wrong; unreachable leftovers of an
        interrupted write are garbage, not problems."""
        problems: list[str] = []
        if not (self.path / "repo.json").exists():
            return [f"repository {self.repository!r} missing at {self.path}"]
        roots: dict[str, str] = {}
        for p in sorted((self.path / "refs" / "heads").glob("*.json")):
            try:
                head = json.loads(p.read_bytes())
                roots[f"branch {p.stem}"] = head["commit"]
                for path, v in self._read_staging(head["staging"]).items():
                    if v is not None and not self._object_path(v[0]).exists():
                        problems.append(f"branch {p.stem}: staged {path!r} has no content")
            except (ValueError, KeyError, OSError) as e:
                problems.append(f"branch ref {p.name} unreadable: {e}")
        tags_dir = self.path / "refs" / "tags"
        for p in sorted(tags_dir.iterdir()):
            if not p.name.startswith(TEMP_PREFIX):
                roots[f"tag {p.name}"] = p.read_text().strip()
        if "branch " + self.default_branch not in roots:
            problems.append(f"default branch {self.default_branch!r} is missing")
        checked_commits: set[str] = set()
        checked_trees: set[str] = set()
        checked_blobs: set[str] = set()
        for label, start in roots.items():
            stack = [start]
            while stack:
                cid = stack.pop()
                if cid in checked_commits:
                    continue
                checked_commits.add(cid)
                cpath = self._commit_path(cid)
                try:
                    data = cpath.read_bytes()
                except FileNotFoundError:
                    problems.append(f"{label}: commit {cid} missing")
                    continue
                if _sha256(data) != cid:
                    problems.append(f"{label}: commit {cid} content does not match its id")
                    continue
                raw = json.loads(data)
                stack.extend(raw["parents"])
                tid = raw["tree"]
                if tid in checked_trees:
                    continue
                checked_trees.add(tid)
                try:
                    tdata = self._tree_path(tid).read_bytes()
                except FileNotFoundError:
                    problems.append(f"{label}: tree {tid} of commit {cid} missing")
                    continue
                if _sha256(tdata) != tid:
                    problems.append(f"{label}: tree {tid} content does not match its id")
                    continue
                for path, (sha, size) in json.loads(tdata)["entries"].items():
                    if sha in checked_blobs:
                        continue
                    checked_blobs.add(sha)
                    opath = self._object_path(sha)
                    if not opath.exists():
                        problems.append(f"{label}: object {path!r} content {sha} missing")
                    elif opath.stat().st_size != size:
                        problems.append(f"{label}: object {path!r} has the wrong size")
                    elif verify_content and _sha256(opath.read_bytes()) != sha:
                        problems.append(f"{label}: object {path!r} content is corrupt")
        return problems


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
