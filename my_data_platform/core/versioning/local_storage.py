"""The embedded store's files: one repository's folder, its lock, records, refs and staging.

:class:`LocalStorage` knows the on-disk layout and how to change it safely (atomic writes under
the repository lock, content-addressed records); :mod:`.local` builds the version-store
operations on it. Layout and crash-safety argument: ``docs/versioning.md``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import threading
import time
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
    Commit,
    GarbageCollection,
    InvalidNameError,
    LockTimeoutError,
    RefNotFoundError,
    VersioningError,
    looks_like_commit_id,
    validate_ref_name,
)


def _load_syncfs() -> Any:
    """``syncfs(2)`` flushes one filesystem; Python has no wrapper, ``os.sync`` is the fallback."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()

_STAGING_ID = re.compile(r"[0-9a-f]{32}")

# path -> (sha256, size); a staged value of None is a deletion (tombstone)
Tree = dict[str, tuple[str, int]]
Staging = dict[str, tuple[str, int] | None]


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalStorage:
    """One repository's folder; the ref and staging updates run under :meth:`_locked`."""

    repository: str
    default_branch: str = DEFAULT_BRANCH

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
        data = canonical_json({"entries": {p: [h, s] for p, (h, s) in sorted(tree.items())}})
        tid = sha256_hex(data)
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
        data = canonical_json(record)
        cid = sha256_hex(data)
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
            self._head_path(branch), canonical_json({"commit": commit_id, "staging": staging_id})
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
        payload = b"".join(canonical_json(r) + b"\n" for r in records)
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
                if sha256_hex(data) != cid:
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
                if sha256_hex(tdata) != tid:
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
                    elif verify_content and sha256_hex(opath.read_bytes()) != sha:
                        problems.append(f"{label}: object {path!r} content is corrupt")
        return problems

    # ---------------------------------------------------------------- garbage collection
    def _reachable(self) -> tuple[set[str], set[str], set[str], set[str]]:
        """(commits, trees, objects, staging ids) that a branch head, a tag or a staging area
        reaches. Raises :class:`VersioningError` on anything it cannot read: what a missing
        commit's parents reach is unknown, so nothing may be collected then."""
        commits: set[str] = set()
        trees: set[str] = set()
        objects: set[str] = set()
        staging: set[str] = set()
        roots: list[str] = []
        for p in sorted((self.path / "refs" / "heads").glob("*.json")):
            try:
                head = json.loads(p.read_bytes())
                roots.append(head["commit"])
                staging.add(head["staging"])
            except (ValueError, KeyError, OSError) as e:
                raise VersioningError(
                    f"branch ref {p.name} unreadable ({e}); nothing collected"
                ) from None
            objects.update(v[0] for v in self._read_staging(head["staging"]).values() if v)
        for p in sorted((self.path / "refs" / "tags").iterdir()):
            if not p.name.startswith(TEMP_PREFIX):
                roots.append(p.read_text().strip())
        stack = roots
        while stack:
            cid = stack.pop()
            if cid in commits:
                continue
            try:
                raw = json.loads(self._commit_path(cid).read_bytes())
                tid, parents = raw["tree"], raw["parents"]
            except (ValueError, KeyError, OSError) as e:
                raise VersioningError(f"commit {cid} unreadable ({e}); nothing collected") from None
            commits.add(cid)
            stack.extend(parents)
            if tid in trees:
                continue
            try:
                entries = json.loads(self._tree_path(tid).read_bytes())["entries"]
            except (ValueError, KeyError, OSError) as e:
                raise VersioningError(f"tree {tid} unreadable ({e}); nothing collected") from None
            trees.add(tid)
            objects.update(sha for sha, _size in entries.values())
        return commits, trees, objects, staging

    def _stored(self, kind: str) -> Iterator[tuple[str, Path, os.stat_result]]:
        """(id, path, stat) of every record of ``kind`` (objects/trees/commits) on disk. Only
        regular files named by a sha256 are records: temp files of interrupted writes are
        left to the data dir's temp-file sweep, and anything else is not the store's."""
        suffix = "" if kind == "objects" else ".json"
        base = self.path / kind
        for fan in sorted(base.iterdir()) if base.is_dir() else ():
            if not fan.is_dir() or len(fan.name) != 2:
                continue
            for entry in os.scandir(fan):
                name = entry.name
                rid = fan.name + name[: len(name) - len(suffix)]
                if not name.endswith(suffix) or not looks_like_commit_id(rid):
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield rid, Path(entry.path), st

    def _collect_garbage(self, *, grace_s: float, now: float | None) -> GarbageCollection:
        """The collection itself; the caller holds the lock (see ``collect_garbage``)."""
        now = time.time() if now is None else now
        commits, trees, objects, staging = self._reachable()
        counts = {"commits": 0, "trees": 0, "objects": 0, "staging": 0}
        freed = 0
        young = 0
        candidates: list[tuple[str, Path, os.stat_result]] = []
        for kind, live in (("commits", commits), ("trees", trees), ("objects", objects)):
            candidates += [(kind, p, st) for i, p, st in self._stored(kind) if i not in live]
        for p in sorted((self.path / "staging").glob("*.jsonl")):
            # staging ids are uuid4 hex; a file named otherwise is not the store's
            if _STAGING_ID.fullmatch(p.stem) and p.stem not in staging and p.is_file():
                with contextlib.suppress(FileNotFoundError):
                    candidates.append(("staging", p, p.lstat()))
        # commits first, then trees, then objects: an id that still resolves still reads
        for kind, path, st in candidates:
            if now - st.st_mtime < grace_s:
                young += 1
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            counts[kind] += 1
            freed += st.st_size
        return GarbageCollection(
            objects_deleted=counts["objects"],
            trees_deleted=counts["trees"],
            commits_deleted=counts["commits"],
            staging_deleted=counts["staging"],
            bytes_reclaimed=freed,
            kept_young=young,
        )
