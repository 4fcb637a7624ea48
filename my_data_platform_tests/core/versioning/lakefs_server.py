"""A lakeFS API test double: the subset of ``/api/v1`` our lakeFS backend uses, over real HTTP.

Why: no lakeFS server can run in CI, but the backend must be exercised through the official
SDK over its real protocol (auth headers, URL quoting, pagination, JSON models, error codes).
This server answers in the JSON shapes of ``lakefs_sdk.models`` and keeps lakeFS's status codes
(401 bad credentials, 404 missing, 409 exists/conflict, 400 "no changes" / dirty branch). Its
semantics come from the embedded store, so both backends run the same contract tests.

Not product code: it has no persistence guarantees, one process, HTTP basic auth only. The
HTTP plumbing (responses, pagination, the request handler) is in :mod:`.lakefs_http`.

Endpoints (all under ``/api/v1``)::

    GET    /repositories/{repo}
    POST   /repositories
    GET    /repositories/{repo}/branches                      RefList
    POST   /repositories/{repo}/branches                      BranchCreation -> commit id
    GET    /repositories/{repo}/branches/{branch}             Ref
    DELETE /repositories/{repo}/branches/{branch}
    GET    /repositories/{repo}/branches/{branch}/diff        DiffList (uncommitted)
    POST   /repositories/{repo}/branches/{branch}/objects     raw body upload -> ObjectStats
    DELETE /repositories/{repo}/branches/{branch}/objects
    POST   /repositories/{repo}/branches/{branch}/commits     CommitCreation -> Commit
    GET    /repositories/{repo}/refs/{ref}/objects            object bytes (Range supported)
    GET    /repositories/{repo}/refs/{ref}/objects/stat       ObjectStats
    GET    /repositories/{repo}/refs/{ref}/objects/ls         ObjectStatsList
    GET    /repositories/{repo}/refs/{ref}/commits            CommitList (log)
    GET    /repositories/{repo}/commits/{ref}                 Commit (any ref resolves)
    GET    /repositories/{repo}/refs/{left}/diff/{right}      DiffList (two_dot/three_dot)
    POST   /repositories/{repo}/refs/{source}/merge/{branch}  Merge -> MergeResult
    GET    /repositories/{repo}/refs/{source}/merge/{branch}  FindMergeBaseResult
    POST   /repositories/{repo}/tags                          TagCreation -> Ref
    GET    /repositories/{repo}/tags                          RefList
    GET    /repositories/{repo}/tags/{tag}                    Ref
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from my_data_platform.core.versioning import (
    Change,
    Commit,
    InvalidNameError,
    LocalVersionStore,
    MergeConflictError,
    NoChangesError,
    ObjectEntry,
    ObjectNotFoundError,
    RefExistsError,
    RefNotFoundError,
    UncommittedChangesError,
    VersioningError,
)
from my_data_platform_tests.core.versioning.lakefs_http import (
    HTTPError,
    RequestHandler,
    Response,
    json_response,
    page,
)

_SEG = r"([^/]+)"
_REPO = rf"/api/v1/repositories/{_SEG}"


class LakeFSTestServer:
    """Start with ``with LakeFSTestServer(tmp_path) as server: server.endpoint``."""

    def __init__(
        self,
        root: Path,
        access_key_id: str = "AKIAIOSFODNN7EXAMPLE",
        secret_access_key: str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ) -> None:
        self.root = Path(root)
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.requests: list[tuple[str, str]] = []
        self._inject: list[int] = []
        self._lock = threading.Lock()
        self._stores: dict[str, LocalVersionStore] = {}
        self._repo_info: dict[str, dict[str, Any]] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        routes: list[tuple[str, str, Callable[..., Response]]] = [
            ("GET", rf"{_REPO}$", self.get_repository),
            ("POST", r"/api/v1/repositories$", self.create_repository),
            ("GET", rf"{_REPO}/branches$", self.list_branches),
            ("POST", rf"{_REPO}/branches$", self.create_branch),
            ("GET", rf"{_REPO}/branches/{_SEG}$", self.get_branch),
            ("DELETE", rf"{_REPO}/branches/{_SEG}$", self.delete_branch),
            ("GET", rf"{_REPO}/branches/{_SEG}/diff$", self.diff_branch),
            ("POST", rf"{_REPO}/branches/{_SEG}/objects$", self.upload_object),
            ("DELETE", rf"{_REPO}/branches/{_SEG}/objects$", self.delete_object),
            ("POST", rf"{_REPO}/branches/{_SEG}/commits$", self.commit),
            ("GET", rf"{_REPO}/refs/{_SEG}/objects$", self.get_object),
            ("GET", rf"{_REPO}/refs/{_SEG}/objects/stat$", self.stat_object),
            ("GET", rf"{_REPO}/refs/{_SEG}/objects/ls$", self.list_objects),
            ("GET", rf"{_REPO}/refs/{_SEG}/commits$", self.log_commits),
            ("GET", rf"{_REPO}/commits/{_SEG}$", self.get_commit),
            ("GET", rf"{_REPO}/refs/{_SEG}/diff/{_SEG}$", self.diff_refs),
            ("POST", rf"{_REPO}/refs/{_SEG}/merge/{_SEG}$", self.merge),
            ("GET", rf"{_REPO}/refs/{_SEG}/merge/{_SEG}$", self.find_merge_base),
            ("POST", rf"{_REPO}/tags$", self.create_tag),
            ("GET", rf"{_REPO}/tags$", self.list_tags),
            ("GET", rf"{_REPO}/tags/{_SEG}$", self.get_tag),
        ]
        self._routes = [(m, re.compile(p), f) for m, p, f in routes]

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LakeFSTestServer:
        server = self

        class Handler(RequestHandler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LakeFSTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests with ``status`` (to test retries)."""
        with self._lock:
            self._inject.extend([status] * count)

    # ------------------------------------------------------------------ dispatch
    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.access_key_id) & hmac.compare_digest(
            password, self.secret_access_key
        )

    def dispatch(self, method: str, raw_path: str, headers: Any, body: bytes) -> Response:
        parts = urlsplit(raw_path)
        self.requests.append((method, parts.path))
        with self._lock:
            injected = self._inject.pop(0) if self._inject else None
        if injected is not None:
            return json_response(injected, {"message": f"injected failure {injected}"})
        if not self.authorized(headers.get("Authorization")):
            return json_response(401, {"message": "error authenticating request"})
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        for m, pattern, handler in self._routes:
            match = pattern.match(parts.path)
            if m == method and match:
                args = [unquote(g) for g in match.groups()]
                try:
                    return handler(*args, query=query, headers=headers, body=body)
                except HTTPError as e:
                    return json_response(e.status, {"message": e.message})
                except (RefNotFoundError, ObjectNotFoundError) as e:
                    return json_response(404, {"message": f"not found: {e}"})
                except (RefExistsError, MergeConflictError) as e:
                    return json_response(409, {"message": str(e)})
                except NoChangesError:
                    return json_response(400, {"message": "commit: no changes"})
                except UncommittedChangesError as e:
                    return json_response(400, {"message": f"dirty branch: {e}"})
                except (InvalidNameError, VersioningError) as e:
                    return json_response(400, {"message": str(e)})
        return json_response(404, {"message": f"no route for {method} {parts.path}"})

    def store(self, repo: str) -> LocalVersionStore:
        with self._lock:
            store = self._stores.get(repo)
            if store is None:
                store = LocalVersionStore(self.root, repo, durable=False)
                self._stores[repo] = store
        if not store.repository_exists():
            raise HTTPError(404, f"repository {repo!r} not found")
        return store

    # ------------------------------------------------------------------ JSON shapes
    def _repository_json(self, repo: str) -> dict[str, Any]:
        info = self._repo_info.get(repo, {})
        return {
            "id": repo,
            "creation_date": info.get("creation_date", int(time.time())),
            "default_branch": "main",
            "storage_namespace": info.get("storage_namespace", f"local://{repo}"),
            "storage_id": "",
            "read_only": False,
        }

    @staticmethod
    def _commit_json(c: Commit) -> dict[str, Any]:
        return {
            "id": c.id,
            "parents": list(c.parents),
            "committer": "admin",
            "message": c.message,
            "creation_date": int(c.created_at.timestamp()),
            "meta_range_id": "",
            "metadata": c.metadata,
        }

    @staticmethod
    def _stats_json(repo: str, e: ObjectEntry) -> dict[str, Any]:
        return {
            "path": e.path,
            "path_type": "object",
            "physical_address": f"local://{repo}/data/{e.checksum}",
            "checksum": e.checksum,
            "size_bytes": e.size,
            "mtime": int(time.time()),
            "metadata": {},
            "content_type": "application/octet-stream",
        }

    @staticmethod
    def _diff_json(changes: list[Change], sizes: dict[str, int] | None = None) -> list[Any]:
        return [
            {
                "type": c.type,
                "path": c.path,
                "path_type": "object",
                "size_bytes": (sizes or {}).get(c.path),
            }
            for c in changes
        ]

    @staticmethod
    def _body(body: bytes) -> dict[str, Any]:
        try:
            return json.loads(body or b"{}")
        except ValueError:
            raise HTTPError(400, "body is not JSON") from None

    @staticmethod
    def _path_param(query: dict[str, str]) -> str:
        path = query.get("path")
        if not path:
            raise HTTPError(400, "missing path")
        return path

    # ------------------------------------------------------------------ handlers
    def get_repository(self, repo: str, **_: Any) -> Response:
        self.store(repo)
        return json_response(200, self._repository_json(repo))

    def create_repository(self, *, body: bytes, **_: Any) -> Response:
        req = self._body(body)
        name = req.get("name", "")
        if not req.get("storage_namespace"):
            raise HTTPError(400, "storage_namespace is required")
        if (req.get("default_branch") or "main") != "main":
            raise HTTPError(400, "this test server only supports default branch 'main'")
        store = LocalVersionStore(self.root, name, durable=False)
        if store.repository_exists():
            raise HTTPError(409, f"repository {name!r} already exists")
        store.create_repository()
        self._repo_info[name] = {
            "storage_namespace": req["storage_namespace"],
            "creation_date": int(time.time()),
        }
        return json_response(201, self._repository_json(name))

    def list_branches(self, repo: str, *, query: dict[str, str], **_: Any) -> Response:
        store = self.store(repo)
        prefix = query.get("prefix", "")
        refs = [
            {"id": b, "commit_id": store.branch_head(b)}
            for b in store.list_branches()
            if b.startswith(prefix)
        ]
        return json_response(200, page(refs, lambda r: r["id"], query))

    def create_branch(self, repo: str, *, body: bytes, **_: Any) -> Response:
        req = self._body(body)
        cid = self.store(repo).create_branch(req["name"], req["source"])
        return Response(201, cid.encode(), "text/html")

    def get_branch(self, repo: str, branch: str, **_: Any) -> Response:
        return json_response(200, {"id": branch, "commit_id": self.store(repo).branch_head(branch)})

    def delete_branch(self, repo: str, branch: str, **_: Any) -> Response:
        self.store(repo).delete_branch(branch)
        return Response(204)

    def diff_branch(self, repo: str, branch: str, *, query: dict[str, str], **_: Any) -> Response:
        changes = self.store(repo).uncommitted(branch)
        return json_response(200, page(self._diff_json(changes), lambda d: d["path"], query))

    def upload_object(
        self, repo: str, branch: str, *, query: dict[str, str], headers: Any, body: bytes
    ) -> Response:
        if headers.get("Content-Type", "").startswith("multipart/"):
            raise HTTPError(400, "this test server only accepts raw uploads")
        path = self._path_param(query)
        entry = self.store(repo).put_object(branch, path, body)
        return json_response(201, self._stats_json(repo, entry))

    def delete_object(self, repo: str, branch: str, *, query: dict[str, str], **_: Any) -> Response:
        store = self.store(repo)
        path = self._path_param(query)
        store.branch_head(branch)
        if not any(e.path == path for e in store.list_objects(branch, path)):
            raise HTTPError(404, f"object {path!r} not found")
        store.delete_object(branch, path)
        return Response(204)

    def commit(self, repo: str, branch: str, *, body: bytes, **_: Any) -> Response:
        req = self._body(body)
        c = self.store(repo).commit(
            branch,
            req.get("message", ""),
            req.get("metadata") or {},
            allow_empty=bool(req.get("allow_empty")),
        )
        return json_response(201, self._commit_json(c))

    def _entry(self, repo: str, ref: str, path: str) -> ObjectEntry:
        store = self.store(repo)
        store.resolve_ref(ref)
        for e in store.list_objects(ref, path):
            if e.path == path:
                return e
        raise HTTPError(404, f"object {path!r} not found at {ref!r}")

    def get_object(
        self, repo: str, ref: str, *, query: dict[str, str], headers: Any, **_: Any
    ) -> Response:
        path = self._path_param(query)
        entry = self._entry(repo, ref, path)
        data = self.store(repo).get_object(ref, path)
        common = {"ETag": f'"{entry.checksum}"', "Accept-Ranges": "bytes"}
        rng = headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            size = len(data)
            if not m or int(m.group(1)) >= size:
                return Response(416, b"", headers={"Content-Range": f"bytes */{size}"})
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            return Response(
                206,
                data[start : end + 1],
                "application/octet-stream",
                {**common, "Content-Range": f"bytes {start}-{end}/{size}"},
            )
        return Response(200, data, "application/octet-stream", common)

    def stat_object(self, repo: str, ref: str, *, query: dict[str, str], **_: Any) -> Response:
        path = self._path_param(query)
        return json_response(200, self._stats_json(repo, self._entry(repo, ref, path)))

    def list_objects(self, repo: str, ref: str, *, query: dict[str, str], **_: Any) -> Response:
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        results: list[dict[str, Any]] = []
        seen_prefixes: set[str] = set()
        for e in self.store(repo).list_objects(ref, prefix):
            rest = e.path[len(prefix) :]
            if delimiter and delimiter in rest:
                common = prefix + rest.split(delimiter, 1)[0] + delimiter
                if common not in seen_prefixes:
                    seen_prefixes.add(common)
                    results.append(
                        {
                            "path": common,
                            "path_type": "common_prefix",
                            "physical_address": "",
                            "checksum": "",
                            "mtime": 0,
                        }
                    )
                continue
            results.append(self._stats_json(repo, e))
        return json_response(200, page(results, lambda r: r["path"], query))

    def log_commits(self, repo: str, ref: str, *, query: dict[str, str], **_: Any) -> Response:
        commits = [self._commit_json(c) for c in self.store(repo).log(ref, limit=1_000_000)]
        return json_response(200, page(commits, lambda c: c["id"], query))

    def get_commit(self, repo: str, ref: str, **_: Any) -> Response:
        return json_response(200, self._commit_json(self.store(repo).get_commit(ref)))

    def diff_refs(
        self, repo: str, left: str, right: str, *, query: dict[str, str], **_: Any
    ) -> Response:
        store = self.store(repo)
        left_c, right_c = store.resolve_ref(left), store.resolve_ref(right)
        if query.get("type", "three_dot") == "three_dot":
            left_c = store.merge_base(left_c, right_c) or left_c
        changes = store.diff(left_c, right_c)
        sizes = {e.path: e.size for e in store.list_objects(right_c)}
        return json_response(200, page(self._diff_json(changes, sizes), lambda d: d["path"], query))

    def merge(self, repo: str, source: str, dest: str, *, body: bytes, **_: Any) -> Response:
        req = self._body(body)
        if req.get("strategy") or req.get("squash_merge"):
            raise HTTPError(400, "strategy/squash_merge are not supported by this test server")
        store = self.store(repo)
        before = store.branch_head(dest)
        after = store.merge(source, dest, req.get("message"), req.get("metadata") or None)
        if after == before:  # what lakeFS answers when there is nothing to merge
            raise HTTPError(400, "no changes")
        return json_response(200, {"reference": after})

    def find_merge_base(self, repo: str, source: str, dest: str, **_: Any) -> Response:
        store = self.store(repo)
        src, dst = store.resolve_ref(source), store.branch_head(dest)
        base = store.merge_base(src, dst)
        if base is None:
            raise HTTPError(404, "no merge base")
        return json_response(
            200,
            {"source_commit_id": src, "destination_commit_id": dst, "base_commit_id": base},
        )

    def create_tag(self, repo: str, *, body: bytes, **_: Any) -> Response:
        req = self._body(body)
        cid = self.store(repo).create_tag(req["id"], req["ref"])
        return json_response(201, {"id": req["id"], "commit_id": cid})

    def list_tags(self, repo: str, *, query: dict[str, str], **_: Any) -> Response:
        prefix = query.get("prefix", "")
        refs = [
            {"id": t, "commit_id": c}
            for t, c in sorted(self.store(repo).list_tags().items())
            if t.startswith(prefix)
        ]
        return json_response(200, page(refs, lambda r: r["id"], query))

    def get_tag(self, repo: str, tag: str, **_: Any) -> Response:
        tags = self.store(repo).list_tags()
        if tag not in tags:
            raise HTTPError(404, f"tag {tag!r} not found")
        return json_response(200, {"id": tag, "commit_id": tags[tag]})
