"""Check the lakeFS test server's traffic against the vendored lakeFS OpenAPI spec.

Why: a test double drifts from the real API silently (a missing required field, a wrong status,
a body where the spec has none), and the SDK may then be tested against a server that lakeFS is
not. Every request the SDK sends and every response the test server returns is validated with
``openapi-core`` against ``spec/swagger.yml``; :class:`~.lakefs_server.LakeFSTestServer` records
each mismatch as a :class:`Violation` and its owner fails the test.

The spec is parsed once per process (YAML parsing takes most of a second); validation itself
is a few milliseconds per call.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_DIR = Path(__file__).parent / "spec"
SPEC_PATH = SPEC_DIR / "swagger.yml"
BASE_PATH = "/api/v1"  # the spec's ``servers[0].url``
HOST_URL = "http://lakefs.test"  # any host: the spec's server URL is relative

# openapi-core warns (DeprecationWarning) each time it meets ``allowEmptyValue``, which lakeFS's
# spec uses for ``If-Match``; the warning is about the spec, not us, and the test run turns
# warnings into errors. ``catch_warnings`` is process-global, hence one validation at a time.
_VALIDATING = threading.Lock()

# Documented defects of the spec itself, where real lakeFS (the Go source) and the HTTP RFCs
# agree against it. Each entry: (operationId, status, error substring) -> why it is ignored.
KNOWN_SPEC_DEFECTS: dict[tuple[str, int, str], str] = {
    ("getObject", 206, "Content-Range"): (
        "the spec's Content-Range pattern is '^bytes=...' (a Range request header's form); "
        "lakeFS's controller writes 'bytes %d-%d/%d' as RFC 9110 requires"
    ),
}

# Limits of the validator, not mismatches: openapi-core reports an empty body as missing data,
# but a zero-byte object (or range of one) is legitimately empty ``application/octet-stream``.
_EMPTY_BINARY_OK = {"getObject"}


@dataclass(frozen=True)
class Violation:
    """One request or response that does not match the spec."""

    kind: str  # "request" or "response"
    method: str
    path: str
    status: int | None
    errors: tuple[str, ...]

    def __str__(self) -> str:
        where = f"{self.method} {self.path}" + (f" -> {self.status}" if self.status else "")
        return f"{self.kind} {where}: " + "; ".join(self.errors)


@functools.cache
def spec_dict() -> dict[str, Any]:
    """The vendored spec as plain JSON data (YAML's integer status keys become strings)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open(encoding="utf-8") as f:
        raw = yaml.load(f, Loader=loader)  # a safe loader (C or Python)
    return json.loads(json.dumps(raw))


@functools.cache
def openapi() -> OpenAPI:
    """The spec as an ``openapi-core`` application, built once per process.

    The spec document itself is not re-validated (``spec_validator_cls=None``): it is lakeFS's
    own, and checking it costs seconds for nothing.
    """
    return OpenAPI.from_dict(spec_dict(), config=Config(spec_validator_cls=None))


@dataclass(frozen=True)
class Route:
    """Where a request lands in the spec."""

    template: str | None  # the spec's path template, None when no spec path matches
    operation: str | None  # its operationId for this method, None when the method is absent
    params: dict[str, str]  # path parameters, URL-decoded


@functools.cache
def _routes() -> list[tuple[re.Pattern[str], str, dict[str, str]]]:
    """(path regex, template, METHOD -> operationId); literal paths sort before templated."""
    out = []
    for template, item in spec_dict()["paths"].items():
        regex = re.escape(BASE_PATH + template)
        regex = re.sub(r"\\\{([A-Za-z_]+)\\\}", r"(?P<\1>[^/]+)", regex)
        ops = {
            m.upper(): op["operationId"]
            for m, op in item.items()
            if isinstance(op, dict) and "operationId" in op
        }
        out.append((re.compile(regex + "$"), template, ops))
    out.sort(key=lambda r: r[1].count("{"))
    return out


def find_route(method: str, path: str) -> Route:
    """The spec operation a request (``path`` still URL-encoded) is for."""
    fallback = Route(None, None, {})
    for regex, template, ops in _routes():
        m = regex.match(path)
        if m:
            params = {k: unquote(v) for k, v in m.groupdict().items()}
            if method.upper() in ops:
                return Route(template, ops[method.upper()], params)
            if fallback.template is None:
                fallback = Route(template, None, params)
    return fallback


def operation_ids() -> set[str]:
    return {op for _, _, ops in _routes() for op in ops.values()}


class _Request:
    """The request as ``openapi_core.protocols.Request`` wants it."""

    def __init__(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        self.host_url = HOST_URL
        self.path = path
        self.method = method.lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(query)), header=Headers(dict(headers))
        )
        self.body = body or None
        self.content_type = (headers.get("Content-Type") or "").lower()


class _Response:
    def __init__(self, status: int, content_type: str, headers: Mapping[str, str], data: bytes):
        self.status_code = status
        self.content_type = content_type.lower() if data else ""
        self.headers = Headers(dict(headers))
        self.data = data or None


def _describe(e: BaseException) -> str:
    """openapi-core nests the useful part (which field broke which rule) in causes and
    ``schema_errors``; flatten it into one line."""
    parts = [f"{type(e).__name__}: {e}".rstrip(": ")]
    if "Header" in type(e).__name__ and getattr(e, "name", None):
        parts[0] = f"{type(e).__name__}: header {e.name}: {e}".rstrip(": ")  # type: ignore[attr-defined]
    cur: BaseException | None = e
    seen = {id(e)}
    while cur is not None:
        parts.extend(getattr(sub, "message", str(sub)) for sub in getattr(cur, "schema_errors", ()))
        cur = cur.__cause__ or cur.__context__
        if cur is None or id(cur) in seen:
            break
        seen.add(id(cur))
        if not getattr(cur, "schema_errors", None):
            parts.append(f"{type(cur).__name__}: {cur}".rstrip(": "))
    out: list[str] = []
    for p in parts:  # the same text is often repeated at each level
        if p and p not in out:
            out.append(p)
    return " | ".join(out)


@dataclass
class Exchange:
    """One request as the server received it, to validate it and then its response."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes
    operation: str | None = None

    def _request(self) -> _Request:
        return _Request(self.method, self.path, self.query, self.headers, self.body)

    def request_errors(self) -> list[str]:
        """Spec mismatches of the request. Security is not checked here: real lakeFS's request
        validator runs with a no-op authentication function, its auth middleware answers 401."""
        with _VALIDATING, warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Use of allowEmptyValue", DeprecationWarning)
            found = list(openapi().iter_request_errors(self._request()))
        return [_describe(e) for e in found if "Security" not in type(e).__name__]

    def response_errors(
        self, status: int, content_type: str, headers: Mapping[str, str], body: bytes
    ) -> list[str]:
        resp = _Response(status, content_type, headers, body)
        with _VALIDATING, warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Use of allowEmptyValue", DeprecationWarning)
            found = list(openapi().iter_response_errors(self._request(), resp))
        errors = []
        for e in found:
            text = _describe(e)
            if (
                type(e).__name__ == "MissingData"
                and self.operation in _EMPTY_BINARY_OK
                and content_type.startswith("application/octet-stream")
            ):
                continue
            if any(
                op == self.operation and st == status and needle in text
                for (op, st, needle) in KNOWN_SPEC_DEFECTS
            ):
                continue
            errors.append(text)
        return errors
