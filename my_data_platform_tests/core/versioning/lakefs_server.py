"""A lakeFS API test double: the subset of ``/api/v1`` our lakeFS backend uses, over real HTTP.

Why: no lakeFS server can run in CI, but the backend must be exercised through the official
SDK over its real protocol (auth headers, URL quoting, pagination, JSON models, error codes).
Storage comes from the embedded store; where lakeFS's rules differ from it, this server follows
lakeFS (v1.84.0 source, the vendored spec's release; see ``spec/README.md``).

**Checked against the spec.** Every request and every response is validated with openapi-core
against ``spec/swagger.yml`` (:mod:`.spec_validation`). A request that does not match gets 400,
as lakeFS's own request validator answers; every mismatch either way is recorded in
:attr:`LakeFSTestServer.violations`, and leaving the ``with`` block (the ``lakefs_server``
fixture does) raises if any is left. A test that sends a bad request on purpose takes its
violations with :meth:`LakeFSTestServer.take_violations`.

**lakeFS's rules, as its source has them** (``pkg/api``, ``pkg/catalog``, ``pkg/graveler``):

- Routing: a path under ``/api/v1`` the spec does not have -> 404 ``invalid API endpoint``
  (``InvalidAPIEndpointHandler``); a request the spec rejects (a repository name not matching
  ``^[a-z0-9][a-z0-9-]{2,62}$`` on create, ``amount`` > 1000) -> 400 (``OapiRequestValidator``,
  which runs before authentication). A repository path parameter that is not a valid id -> 400
  ``argument repository: repository id: invalid value: validation error``.
- ``amount`` <= 0 means 100, above 1000 means 1000 (``paginationAmount``).
- DELETE of an object that does not exist -> 204 (``deleteUnsafe``: "nothing to do").
- Merge never fast-forwards: it writes a commit with parents [destination head, source head]
  (squash: [destination head]), the request's message (default ``Merge '<src>' into '<dst>'``)
  and metadata plus ``.lakefs.merge.strategy`` = ``default`` / ``dest-wins`` / ``source-wins``.
  "No changes" (400) means the source's tree equals the merge base's tree (metarange compare),
  unless ``allow_empty`` or ``force``. A conflict -> 409 with a ``MergeResult`` body.
- Diff entries carry ``size_bytes`` (a removed entry: the size it had).
- 416 (range not satisfiable) -> ``{"message": "Requested Range Not Satisfiable"}`` and
  ``Content-Range: bytes */<size>``.
- Branches and tags live in separate stores but the catalog keeps their names apart: a branch
  named like a tag -> 409 ``tag ID <name>: conflict found``; a tag named like a branch -> 409
  ``branch name <name>: conflict found``; either named like an existing commit id -> 409
  ``commit ID <id>: conflict found``. A ref resolves as full commit id, then branch, then tag.
- Branch protection (``GET``/``PUT /repositories/{repo}/settings/branch_protection``, ETag and
  ``If-Match``): a rule's pattern is a glob; a matching branch blocks staging writes (upload,
  delete: 403 ``cannot write to protected branch``) and commits (403 ``cannot commit to
  protected branch``). Merges INTO a protected branch are allowed: ``Graveler.Merge`` does not
  consult the protection manager (it is the way to update a protected branch).
- Hooks: :meth:`LakeFSTestServer.fail_hook` makes ``pre-commit`` / ``pre-merge`` fail with 412
  and lakeFS's ``HookAbortError`` message. As in lakeFS, a pre-commit hook runs before the
  "no changes" check, a pre-merge hook after the merge is computed (a conflict wins).
- A commit racing another branch update: lakeFS retries the branch update
  (``BranchUpdateMaxTries`` = 10) and then answers 429 ``Too many attempts, try again later``
  (``ErrTooManyTries``); it has no 409 for this. :meth:`LakeFSTestServer.race_next_commit`.

Not product code: no persistence guarantees, one process, HTTP basic auth only. The HTTP
plumbing (responses, pagination, the request handler) is in :mod:`.lakefs_http`.

Operations (spec operationIds): getRepository, createRepository, listBranches, createBranch,
getBranch, deleteBranch, diffBranch, uploadObject (raw or multipart), deleteObject, commit,
getObject (Range), statObject, listObjects, logCommits, getCommit, diffRefs, mergeIntoBranch,
findMergeBase, createTag, listTags, getTag, getBranchProtectionRules, setBranchProtectionRules.
Other spec operations answer 501.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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
from my_data_platform_tests.core.versioning.spec_validation import (
    Exchange,
    Route,
    Violation,
    find_route,
    operation_ids,
)

MERGE_STRATEGY_KEY = ".lakefs.merge.strategy"  # graveler.MergeStrategyMetadataKey
_STRATEGIES = {"": "default", "dest-wins": "dest-wins", "source-wins": "source-wins"}
REPOSITORY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")  # validator.ReValidRepositoryID
BRANCH_ID = re.compile(r"^\w[-\w]*$", re.ASCII)  # validator.ReValidBranchID
_FULL_COMMIT_ID = re.compile(r"^[0-9a-fA-F]{64}$")

# lakeFS's messages, verbatim
INVALID_ENDPOINT = "invalid API endpoint"
INVALID_REPOSITORY = "argument repository: repository id: invalid value: validation error"
INVALID_BRANCH = (
    "argument branch: branch id: invalid value: validation error: branch id must consist of "
    "letters, digits, underscores and dashes, and cannot start with a dash"
)
WRITE_TO_PROTECTED = "cannot write to protected branch"
COMMIT_TO_PROTECTED = "cannot commit to protected branch"
TOO_MANY_TRIES = "Too many attempts, try again later"
PRECONDITION_FAILED = "Precondition failed"
RANGE_NOT_SATISFIABLE = "Requested Range Not Satisfiable"
HOOK_EVENTS = ("pre-commit", "pre-merge")


@dataclass
class Call:
    """One routed request, as a handler sees it."""

    params: dict[str, str]
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes

    @property
    def repo(self) -> str:
        return self.params["repository"]

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise HTTPError(400, "body is not JSON") from None


@dataclass
class _Injection:
    status: int
    message: str
    method: str | None
    path: re.Pattern[str] | None
    predicate: Callable[[str, str], bool] | None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.path is not None and not self.path.search(path):
            return False
        return self.predicate is None or self.predicate(method, path)


@dataclass
class _HookFailure:
    event: str
    message: str
    branch: str | None
    action: str
    hook: str


class _LakeFSStore(LocalVersionStore):
    """The embedded store plus the one operation whose rules differ in lakeFS: merge."""

    def lakefs_merge(
        self,
        source_ref: str,
        dest_branch: str,
        message: str,
        metadata: Mapping[str, str],
        *,
        strategy: str = "",
        squash: bool = False,
        allow_empty: bool = False,
        before_update: Callable[[], None] | None = None,
    ) -> str:
        """``Graveler.Merge`` + ``committedManager.Merge``: always a new commit; "no changes"
        only when the source's tree is the merge base's tree. ``before_update`` runs where
        lakeFS runs the pre-merge hook (after the merge is computed, before the branch moves)."""
        if strategy not in _STRATEGIES:
            raise HTTPError(400, "invalid strategy: invalid value: validation error")
        with self._locked():
            src, head, dst_tree = self._merge_sides(source_ref, dest_branch)
            dst = head["commit"]
            base = self.merge_base(src, dst)
            base_tree = self._commit_tree(base) if base else {}
            src_tree = self._commit_tree(src)
            if src_tree == base_tree and not allow_empty:
                raise NoChangesError("no changes")
            if dst_tree == base_tree:
                merged = src_tree
            else:
                merged, conflicts = _three_way(base_tree, src_tree, dst_tree, strategy)
                if conflicts:
                    raise MergeConflictError(source_ref, dest_branch, conflicts)
            meta = {**metadata, MERGE_STRATEGY_KEY: _STRATEGIES[strategy]}
            parents = [dst] if squash else [dst, src]
            cid = self._write_commit(self._write_tree(merged), parents, message, meta)
            if before_update is not None:
                before_update()
            self._sync_filesystem()
            self._move_clean_head(dest_branch, cid, head["staging"])
        return cid


def _three_way(
    base: dict[str, Any], source: dict[str, Any], dest: dict[str, Any], strategy: str
) -> tuple[dict[str, Any], list[str]]:
    """Object-level three-way merge; a conflict is resolved by ``strategy`` when it has one."""
    merged: dict[str, Any] = {}
    conflicts: list[str] = []
    for path in base.keys() | source.keys() | dest.keys():
        b, s, d = base.get(path), source.get(path), dest.get(path)
        s_id, d_id, b_id = (s and s[0]), (d and d[0]), (b and b[0])
        if s_id in (d_id, b_id):
            result = d
        elif d_id == b_id:
            result = s
        elif strategy == "dest-wins":
            result = d
        elif strategy == "source-wins":
            result = s
        else:
            conflicts.append(path)
            continue
        if result is not None:
            merged[path] = result
    return merged, sorted(conflicts)


class LakeFSTestServer:
    """Start with ``with LakeFSTestServer(tmp_path) as server: server.endpoint``.

    Test controls (all thread safe):

    - ``fail_next(count, status=503, message=None, *, method=None, path=None, match=None)``
    - ``race_next_commit(branch=None, count=1)``
    - ``fail_hook(event, message, branch=None, *, action=..., hook=...)``, ``clear_hooks()``
    - ``protect_branch(repo, pattern)`` (through the real ``setBranchProtectionRules``)
    - ``take_violations()``; ``requests`` lists (method, path) of every request received.
    """

    def __init__(
        self,
        root: Path,
        access_key_id: str = "AKIAIOSFODNN7EXAMPLE",
        secret_access_key: str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        *,
        validate: bool = True,
    ) -> None:
        """``validate=False`` turns the spec checks off (only to debug the server itself)."""
        self.root = Path(root)
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.validate = validate
        self.requests: list[tuple[str, str]] = []
        self.violations: list[Violation] = []
        self.server_errors: list[str] = []
        self._inject: list[_Injection] = []
        self._hooks: list[_HookFailure] = []
        self._protection: dict[str, list[str]] = {}  # repo -> patterns (absent: never set)
        self._lock = threading.Lock()
        self._stores: dict[str, _LakeFSStore] = {}
        self._repo_info: dict[str, dict[str, Any]] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._handlers: dict[str, Callable[[Call], Response]] = {
            "getRepository": self.get_repository,
            "createRepository": self.create_repository,
            "listBranches": self.list_branches,
            "createBranch": self.create_branch,
            "getBranch": self.get_branch,
            "deleteBranch": self.delete_branch,
            "diffBranch": self.diff_branch,
            "uploadObject": self.upload_object,
            "deleteObject": self.delete_object,
            "commit": self.commit,
            "getObject": self.get_object,
            "statObject": self.stat_object,
            "listObjects": self.list_objects,
            "logCommits": self.log_commits,
            "getCommit": self.get_commit,
            "diffRefs": self.diff_refs,
            "mergeIntoBranch": self.merge,
            "findMergeBase": self.find_merge_base,
            "createTag": self.create_tag,
            "listTags": self.list_tags,
            "getTag": self.get_tag,
            "getBranchProtectionRules": self.get_branch_protection,
            "setBranchProtectionRules": self.set_branch_protection,
        }
        unknown = set(self._handlers) - operation_ids()
        assert not unknown, f"handlers for operations the spec does not have: {unknown}"

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

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if exc_type is None:
            self.assert_clean()

    def assert_clean(self) -> None:
        """Fail if the server saw traffic the spec does not allow, or had a bug of its own."""
        problems = [str(v) for v in self.violations] + self.server_errors
        if problems:
            raise AssertionError(
                f"lakeFS test server: {len(problems)} spec violation(s)/server error(s):\n  "
                + "\n  ".join(problems)
            )

    def take_violations(self) -> list[Violation]:
        """Return and forget the violations so far (for tests that send bad requests)."""
        with self._lock:
            taken, self.violations = self.violations, []
        return taken

    # ------------------------------------------------------------------ test controls
    def fail_next(
        self,
        count: int,
        status: int = 503,
        message: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        match: Callable[[str, str], bool] | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` (429/503 contention,
        500 ...) and ``{"message": message}``, before routing or authentication, as an
        overloaded server or proxy would. Filters: ``method`` ("POST"), ``path`` (a regex
        searched in the URL path, e.g. ``r"/merge/main$"``), ``match(method, path)``."""
        injection = _Injection(
            status,
            message or f"injected failure {status}",
            method.upper() if method else None,
            re.compile(path) if path else None,
            match,
        )
        with self._lock:
            self._inject.extend([injection] * count)

    def race_next_commit(self, branch: str | None = None, count: int = 1) -> None:
        """The next ``count`` commits (on ``branch``, or any) lose the race for the branch
        update, as when another writer keeps moving it: lakeFS gives up after its retries and
        answers 429 ``Too many attempts, try again later``; the branch is unchanged."""
        target = re.escape(branch) if branch else "[^/]+"
        self.fail_next(
            count, 429, TOO_MANY_TRIES, method="POST", path=rf"/branches/{target}/commits$"
        )

    def fail_hook(
        self,
        event: str,
        message: str,
        branch: str | None = None,
        *,
        action: str = "test_action",
        hook: str = "test_hook",
    ) -> None:
        """Make ``event`` ("pre-commit" / "pre-merge") fail on ``branch`` (the committed /
        merged-into branch; any when None) until :meth:`clear_hooks`: 412 with the message
        lakeFS's ``HookAbortError`` carries."""
        if event not in HOOK_EVENTS:
            raise ValueError(f"event must be one of {HOOK_EVENTS}, got {event!r}")
        with self._lock:
            self._hooks.append(_HookFailure(event, message, branch, action, hook))

    def clear_hooks(self) -> None:
        with self._lock:
            self._hooks.clear()

    def protect_branch(self, repo: str, pattern: str) -> None:
        """Add a branch protection rule through ``setBranchProtectionRules`` (GET for the
        ETag, PUT with ``If-Match``), the same path an API client takes."""
        auth = (
            "Basic "
            + base64.b64encode(f"{self.access_key_id}:{self.secret_access_key}".encode()).decode()
        )
        url = f"/api/v1/repositories/{repo}/settings/branch_protection"
        got = self.dispatch("GET", url, {"Authorization": auth}, b"")
        if got.status != 200:
            raise AssertionError(f"protect_branch: GET answered {got.status}: {got.body!r}")
        rules = [*json.loads(got.body), {"pattern": pattern}]
        headers = {
            "Authorization": auth,
            "Content-Type": "application/json",
            "If-Match": got.headers["ETag"],
        }
        put = self.dispatch("PUT", url, headers, json.dumps(rules).encode())
        if put.status != 204:
            raise AssertionError(f"protect_branch: PUT answered {put.status}: {put.body!r}")

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

    def _take_injection(self, method: str, path: str) -> _Injection | None:
        with self._lock:
            for i, inj in enumerate(self._inject):
                if inj.matches(method, path):
                    return self._inject.pop(i)
        return None

    def _violation(self, kind: str, method: str, path: str, status: int | None, errs: Any) -> None:
        with self._lock:
            self.violations.append(Violation(kind, method, path, status, tuple(errs)))

    def dispatch(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        parts = urlsplit(raw_path)
        path = parts.path
        with self._lock:
            self.requests.append((method, path))
        route = find_route(method, path)
        exchange = Exchange(
            method,
            path,
            parse_qsl(parts.query, keep_blank_values=True),
            {k: v for k, v in headers.items()},
            body,
            route.operation,
        )
        resp = self._answer(method, path, route, exchange, headers, body)
        if self.validate and route.operation is not None:
            errs = exchange.response_errors(resp.status, resp.content_type, resp.headers, resp.body)
            if errs:
                self._violation("response", method, path, resp.status, errs)
        return resp

    def _answer(
        self,
        method: str,
        path: str,
        route: Route,
        exchange: Exchange,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Response:
        injected = self._take_injection(method, path)
        if injected is not None:
            return json_response(injected.status, {"message": injected.message})
        if route.operation is None:
            if self.validate:
                self._violation("request", method, path, 404, ["no such operation in the spec"])
            return json_response(404, {"message": INVALID_ENDPOINT})
        if self.validate:
            errs = exchange.request_errors()
            if errs:
                self._violation("request", method, path, 400, errs)
                return json_response(400, {"message": "; ".join(errs)})
        if not self.authorized(headers.get("Authorization")):
            return json_response(401, {"message": "error authenticating request"})
        handler = self._handlers.get(route.operation)
        if handler is None:
            return json_response(
                501, {"message": f"{route.operation} is not implemented by the lakeFS test server"}
            )
        query = dict(exchange.query)
        call = Call(route.params, query, headers, body)
        try:
            if "repository" in route.params and not REPOSITORY_ID.match(call.repo):
                raise HTTPError(400, INVALID_REPOSITORY)
            return handler(call)
        except HTTPError as e:
            return json_response(e.status, {"message": e.message})
        except (RefNotFoundError, ObjectNotFoundError) as e:
            return json_response(404, {"message": f"not found: {e}"})
        except MergeConflictError:
            return json_response(409, {"reference": ""})  # lakeFS: an empty MergeResult
        except RefExistsError as e:
            return json_response(409, {"message": str(e)})
        except NoChangesError:
            return json_response(400, {"message": "no changes"})
        except UncommittedChangesError:
            return json_response(400, {"message": "uncommitted changes (dirty branch)"})
        except (InvalidNameError, VersioningError) as e:
            return json_response(400, {"message": str(e)})

    def store(self, repo: str) -> _LakeFSStore:
        with self._lock:
            store = self._stores.get(repo)
            if store is None:
                store = _LakeFSStore(self.root, repo, durable=False)
                self._stores[repo] = store
        if not store.repository_exists():
            raise HTTPError(404, f"repository not found: {repo}")
        return store

    # ------------------------------------------------------------------ lakeFS rules
    def _protected(self, repo: str, branch: str) -> bool:
        """``ProtectionManager.IsBlocked``: any rule whose glob matches the branch."""
        with self._lock:
            patterns = list(self._protection.get(repo, []))
        return any(fnmatch.fnmatchcase(branch, p) for p in patterns)

    def _run_hook(self, event: str, branch: str, prefix: str = "") -> None:
        """Raise lakeFS's 412 when a failing ``event`` hook applies to ``branch``.

        The message is ``HookAbortError`` around go-multierror around the actions service's
        wrapping: ``<event> hook aborted, run id '<id>': 1 error occurred:\\n\\t* hook run id
        '<nnnn_nnnn>' failed on action '<action>' hook '<hook>': action failed: <message>``."""
        with self._lock:
            failing = [h for h in self._hooks if h.event == event and h.branch in (None, branch)]
        if not failing:
            return
        h = failing[0]
        run_id = secrets.token_hex(10)  # lakeFS: an xid (20 characters)
        detail = (
            f"hook run id '0000_0000' failed on action '{h.action}' hook '{h.hook}': "
            f"action failed: {h.message}"
        )
        raise HTTPError(
            412,
            f"{prefix}{event} hook aborted, run id '{run_id}': 1 error occurred:\n\t* {detail}\n\n",
        )

    def _name_is_free(self, store: _LakeFSStore, name: str, kind: str) -> None:
        """``Catalog.CreateBranch`` / ``CreateTag``: names must not collide across refs."""
        if _FULL_COMMIT_ID.match(name):
            with contextlib.suppress(RefNotFoundError):
                store.get_commit(name.lower())
                raise HTTPError(409, f"commit ID {name}: conflict found")
        if kind == "branch" and name in store.list_tags():
            raise HTTPError(409, f"tag ID {name}: conflict found")
        if kind == "tag" and name in store.list_branches():
            raise HTTPError(409, f"branch name {name}: conflict found")

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
    def _diff_json(
        changes: list[Change], left: dict[str, int], right: dict[str, int]
    ) -> list[dict[str, Any]]:
        """lakeFS fills ``size_bytes`` for every object entry: the new size, or for a removed
        entry the size it had."""
        return [
            {
                "type": c.type,
                "path": c.path,
                "path_type": "object",
                "size_bytes": left[c.path] if c.type == "removed" else right[c.path],
            }
            for c in changes
        ]

    @staticmethod
    def _path_param(query: dict[str, str]) -> str:
        path = query.get("path")
        if not path:
            raise HTTPError(400, "missing path")
        return path

    @staticmethod
    def _sizes(entries: list[ObjectEntry]) -> dict[str, int]:
        return {e.path: e.size for e in entries}

    # ------------------------------------------------------------------ handlers
    def get_repository(self, c: Call) -> Response:
        self.store(c.repo)
        return json_response(200, self._repository_json(c.repo))

    def create_repository(self, c: Call) -> Response:
        req = c.json()
        name = req["name"]  # the spec (pattern, required) was checked before we got here
        if not REPOSITORY_ID.match(name):  # when validation is off
            raise HTTPError(400, INVALID_REPOSITORY)
        if (req.get("default_branch") or "main") != "main":
            raise HTTPError(400, "this test server only supports default branch 'main'")
        store = _LakeFSStore(self.root, name, durable=False)
        if store.repository_exists():
            raise HTTPError(409, "error creating repository: not unique")
        store.create_repository()
        self._repo_info[name] = {
            "storage_namespace": req["storage_namespace"],
            "creation_date": int(time.time()),
        }
        return json_response(201, self._repository_json(name))

    def list_branches(self, c: Call) -> Response:
        store = self.store(c.repo)
        prefix = c.query.get("prefix", "")
        refs = [
            {"id": b, "commit_id": store.branch_head(b)}
            for b in store.list_branches()
            if b.startswith(prefix)
        ]
        return json_response(200, page(refs, lambda r: r["id"], c.query))

    def create_branch(self, c: Call) -> Response:
        req = c.json()
        name = req["name"]
        if not BRANCH_ID.match(name):
            raise HTTPError(400, INVALID_BRANCH)
        store = self.store(c.repo)
        self._name_is_free(store, name, "branch")
        if name in store.list_branches():
            raise HTTPError(409, "branch already exists: not unique")
        cid = store.create_branch(name, req["source"])
        return Response(201, cid.encode(), "text/html")

    def get_branch(self, c: Call) -> Response:
        head = self.store(c.repo).branch_head(c.params["branch"])
        return json_response(200, {"id": c.params["branch"], "commit_id": head})

    def delete_branch(self, c: Call) -> Response:
        branch = c.params["branch"]
        if branch == "main":
            raise HTTPError(403, "cannot delete repository default branch")
        self.store(c.repo).delete_branch(branch)
        return Response(204)

    def diff_branch(self, c: Call) -> Response:
        store = self.store(c.repo)
        branch = c.params["branch"]
        changes = store.uncommitted(branch)
        left = self._sizes(store.list_objects(store.branch_head(branch)))
        right = self._sizes(store.list_objects(branch))
        diff = self._diff_json(changes, left, right)
        return json_response(200, page(diff, lambda d: d["path"], c.query))

    @staticmethod
    def _upload_content(c: Call) -> bytes:
        """The object's bytes: the raw body, or the multipart form's ``content`` part (the
        spec's two request bodies for uploadObject)."""
        content_type = c.headers.get("Content-Type") or ""
        if not content_type.startswith("multipart/"):
            return c.body
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        form = BytesParser(policy=HTTP).parsebytes(head + c.body)
        for part in form.iter_parts():
            if part.get_param("name", header="content-disposition") == "content":
                return part.get_payload(decode=True) or b""
        raise HTTPError(400, "multipart upload without a 'content' part")

    def upload_object(self, c: Call) -> Response:
        path = self._path_param(c.query)
        data = self._upload_content(c)
        store = self.store(c.repo)
        store.branch_head(c.params["branch"])
        if self._protected(c.repo, c.params["branch"]):
            raise HTTPError(403, WRITE_TO_PROTECTED)
        entry = store.put_object(c.params["branch"], path, data)
        return json_response(201, self._stats_json(c.repo, entry))

    def delete_object(self, c: Call) -> Response:
        store = self.store(c.repo)
        path = self._path_param(c.query)
        store.branch_head(c.params["branch"])
        if self._protected(c.repo, c.params["branch"]):
            raise HTTPError(403, WRITE_TO_PROTECTED)
        store.delete_object(c.params["branch"], path)  # a missing object: nothing to do, 204
        return Response(204)

    def commit(self, c: Call) -> Response:
        req = c.json()
        branch = c.params["branch"]
        store = self.store(c.repo)
        if self._protected(c.repo, branch):
            raise HTTPError(403, COMMIT_TO_PROTECTED)
        store.branch_head(branch)
        self._run_hook("pre-commit", branch)
        commit = store.commit(
            branch,
            req.get("message", ""),
            req.get("metadata") or {},
            allow_empty=bool(req.get("allow_empty")),
        )
        return json_response(201, self._commit_json(commit))

    def _entry(self, repo: str, ref: str, path: str) -> ObjectEntry:
        store = self.store(repo)
        store.resolve_ref(ref)
        for e in store.list_objects(ref, path):
            if e.path == path:
                return e
        raise HTTPError(404, f"not found: object {path!r} at {ref!r}")

    def get_object(self, c: Call) -> Response:
        path = self._path_param(c.query)
        ref = c.params["ref"]
        entry = self._entry(c.repo, ref, path)
        data = self.store(c.repo).get_object(ref, path)
        common = {"ETag": f'"{entry.checksum}"', "Accept-Ranges": "bytes"}
        rng = c.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            size = len(data)
            if not m or int(m.group(1)) >= size:
                return Response(
                    416,
                    json.dumps({"message": RANGE_NOT_SATISFIABLE}).encode(),
                    headers={"Content-Range": f"bytes */{size}"},
                )
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            return Response(
                206,
                data[start : end + 1],
                "application/octet-stream",
                {**common, "Content-Range": f"bytes {start}-{end}/{size}"},
            )
        return Response(200, data, "application/octet-stream", common)

    def stat_object(self, c: Call) -> Response:
        path = self._path_param(c.query)
        entry = self._entry(c.repo, c.params["ref"], path)
        return json_response(200, self._stats_json(c.repo, entry))

    def list_objects(self, c: Call) -> Response:
        prefix = c.query.get("prefix", "")
        delimiter = c.query.get("delimiter", "")
        results: list[dict[str, Any]] = []
        seen_prefixes: set[str] = set()
        for e in self.store(c.repo).list_objects(c.params["ref"], prefix):
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
            results.append(self._stats_json(c.repo, e))
        return json_response(200, page(results, lambda r: r["path"], c.query))

    def log_commits(self, c: Call) -> Response:
        log = self.store(c.repo).log(c.params["ref"], limit=1_000_000)
        commits = [self._commit_json(x) for x in log]
        return json_response(200, page(commits, lambda x: x["id"], c.query))

    def get_commit(self, c: Call) -> Response:
        commit = self.store(c.repo).get_commit(c.params["commitId"])
        return json_response(200, self._commit_json(commit))

    def diff_refs(self, c: Call) -> Response:
        store = self.store(c.repo)
        left_c = store.resolve_ref(c.params["leftRef"])
        right_c = store.resolve_ref(c.params["rightRef"])
        if c.query.get("type", "three_dot") == "three_dot":
            left_c = store.merge_base(left_c, right_c) or left_c
        changes = store.diff(left_c, right_c)
        left = self._sizes(store.list_objects(left_c))
        right = self._sizes(store.list_objects(right_c))
        diff = self._diff_json(changes, left, right)
        return json_response(200, page(diff, lambda d: d["path"], c.query))

    def merge(self, c: Call) -> Response:
        req = c.json()
        source, dest = c.params["sourceRef"], c.params["destinationBranch"]
        store = self.store(c.repo)
        cid = store.lakefs_merge(
            source,
            dest,
            req.get("message") or f"Merge '{source}' into '{dest}'",
            req.get("metadata") or {},
            strategy=req.get("strategy") or "",
            squash=bool(req.get("squash_merge")),
            allow_empty=bool(req.get("allow_empty") or req.get("force")),
            before_update=lambda: self._run_hook("pre-merge", dest, f"update branch {dest}: "),
        )
        return json_response(200, {"reference": cid})

    def find_merge_base(self, c: Call) -> Response:
        store = self.store(c.repo)
        src = store.resolve_ref(c.params["sourceRef"])
        dst = store.resolve_ref(c.params["destinationBranch"])
        base = store.merge_base(src, dst)
        if base is None:
            raise HTTPError(404, "no merge base")
        return json_response(
            200,
            {"source_commit_id": src, "destination_commit_id": dst, "base_commit_id": base},
        )

    def create_tag(self, c: Call) -> Response:
        req = c.json()
        store = self.store(c.repo)
        self._name_is_free(store, req["id"], "tag")
        if req["id"] in store.list_tags():
            raise HTTPError(409, "tag already exists: not unique")
        cid = store.create_tag(req["id"], req["ref"])
        return json_response(201, {"id": req["id"], "commit_id": cid})

    def list_tags(self, c: Call) -> Response:
        prefix = c.query.get("prefix", "")
        refs = [
            {"id": t, "commit_id": cid}
            for t, cid in sorted(self.store(c.repo).list_tags().items())
            if t.startswith(prefix)
        ]
        return json_response(200, page(refs, lambda r: r["id"], c.query))

    def get_tag(self, c: Call) -> Response:
        tag = c.params["tag"]
        tags = self.store(c.repo).list_tags()
        if tag not in tags:
            raise HTTPError(404, f"not found: tag {tag!r}")
        return json_response(200, {"id": tag, "commit_id": tags[tag]})

    # branch protection: settings.Manager keeps the rules with a checksum as their ETag; ""
    # when none were ever saved. PUT without If-Match overwrites; If-Match "" only creates.
    @staticmethod
    def _etag(patterns: list[str] | None) -> str:
        if patterns is None:
            return ""
        return hashlib.sha256(json.dumps(sorted(patterns)).encode()).hexdigest()

    def get_branch_protection(self, c: Call) -> Response:
        self.store(c.repo)
        with self._lock:
            patterns = self._protection.get(c.repo)
        rules = [{"pattern": p} for p in sorted(patterns or [])]
        return Response(200, json.dumps(rules).encode(), headers={"ETag": self._etag(patterns)})

    def set_branch_protection(self, c: Call) -> Response:
        self.store(c.repo)
        rules = c.json()
        if_match = c.headers.get("If-Match")
        with self._lock:
            current = self._protection.get(c.repo)
            if if_match is not None:
                if if_match == "" and current is not None:
                    raise HTTPError(412, PRECONDITION_FAILED)
                if if_match != "" and (current is None or if_match != self._etag(current)):
                    raise HTTPError(412, PRECONDITION_FAILED)
            self._protection[c.repo] = list(dict.fromkeys(r["pattern"] for r in rules))
        return Response(204)
