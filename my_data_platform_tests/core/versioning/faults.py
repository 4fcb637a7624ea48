"""A lakeFS test server that answers chosen requests with chosen errors, as real lakeFS does.

Why: the errors a user must act on (a protected branch, a failed hook, a lost commit race,
throttling) come from lakeFS configuration our test double does not model. Each is an HTTP
status plus lakeFS's error body ``{"message": ...}``, so answering the request that would hit it
with that status and body exercises our client exactly as the real server would. The messages
below are lakeFS's own (``pkg/graveler/errors.go``, ``pkg/api/controller.go``,
``pkg/actions/service.go``).

This builds only on :class:`LakeFSTestServer`'s constructor and ``dispatch``, so it keeps
working whatever that server learns to do by itself.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from my_data_platform_tests.core.versioning.lakefs_http import Response
from my_data_platform_tests.core.versioning.lakefs_server import (
    COMMIT_TO_PROTECTED,
    TOO_MANY_TRIES,
    WRITE_TO_PROTECTED,
    LakeFSTestServer,
)

__all__ = ["COMMIT_TO_PROTECTED", "TOO_MANY_TRIES", "WRITE_TO_PROTECTED", "FaultyLakeFS"]

# lakeFS's messages the server does not send itself (graveler.ErrReadOnlyRepository;
# kv.ErrSlowDown as the API words it)
READ_ONLY_REPOSITORY = "read-only repository"
SLOW_DOWN = "Throughput exceeded. Slow down and retry"
# an authorization failure says nothing about branches
INSUFFICIENT_PERMISSIONS = "insufficient permissions"

_REPO = r"/api/v1/repositories/[^/]+"


def hook_failure(event: str, hook: str, output: str) -> str:  # for hooks the server lacks
    """The 412 message lakeFS sends when a pre-* hook fails (graveler.HookAbortError around
    the action service's per-hook error)."""
    return (
        f"{event} hook aborted, run id '2a7c1f0e9bd6': 1 error occurred:\n\t* hook run id "
        f"'0000_0000' failed on action 'dataset_rules' hook '{hook}': action failed: {output}\n\n"
    )


@dataclass
class Fault:
    """Answer ``method`` requests whose path matches ``path`` (a regex, searched in the
    unquoted path) with ``status`` and ``{"message": message}``; ``times`` answers, or every
    time when ``None``."""

    method: str
    path: str
    status: int
    message: str
    times: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return method == self.method and re.search(self.path, path) is not None


class FaultyLakeFS(LakeFSTestServer):
    """``with FaultyLakeFS(tmp_path) as server: server.fail("POST", path_regex, 503, msg)``."""

    def __init__(self, root: Path, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.faults: list[Fault] = []
        self.seen: list[tuple[str, str, int]] = []  # (method, path, status) of every request
        self._faults_lock = threading.Lock()

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        message: str,
        *,
        times: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        """Add a fault; the first fault that matches a request answers it."""
        fault = Fault(method, path, status, message, times, dict(headers or {}))
        with self._faults_lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._faults_lock:
            self.faults.clear()

    # ---------------------------------------------------------------- lakeFS configurations
    # Branch protection and hooks are modelled by the server itself (``protect_branch``,
    # ``fail_hook``); what it does not model is answered here.
    def forbid_merge_into(self, branch: str, message: str = READ_ONLY_REPOSITORY) -> Fault:
        """A 403 on merges into ``branch``: real lakeFS refuses a merge only when the
        repository is read-only (branch protection allows merges)."""
        return self.fail("POST", rf"^{_REPO}/refs/[^/]+/merge/{re.escape(branch)}$", 403, message)

    # ---------------------------------------------------------------- dispatch
    def dispatch(self, method: str, raw_path: str, headers: Any, body: bytes) -> Response:
        path = unquote(urlsplit(raw_path).path)
        with self._faults_lock:
            fault = next((f for f in self.faults if f.matches(method, path)), None)
            if fault is not None:
                fault.hits += 1
        if fault is None:
            resp = super().dispatch(method, raw_path, headers, body)
        else:
            payload = json.dumps({"message": fault.message}).encode()
            resp = Response(fault.status, payload, "application/json", dict(fault.headers))
        self.seen.append((method, path, resp.status))
        return resp

    def calls(self, method: str, path_regex: str) -> int:
        """How many ``method`` requests matching ``path_regex`` arrived (faulted or not)."""
        return sum(1 for m, p, _ in self.seen if m == method and re.search(path_regex, p))
