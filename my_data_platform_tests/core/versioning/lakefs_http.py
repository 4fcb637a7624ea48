"""HTTP plumbing of the lakeFS API test server: responses, lakeFS pagination, the handler."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from my_data_platform_tests.core.versioning.lakefs_server import LakeFSTestServer


DEFAULT_PER_PAGE = 100  # lakeFS's DefaultPerPage
MAX_PER_PAGE = 1000  # lakeFS's DefaultMaxPerPage


class HTTPError(Exception):
    """Answer ``status`` with lakeFS's error body, ``{"message": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Response:
    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


def json_response(status: int, obj: Any) -> Response:
    return Response(status, json.dumps(obj).encode())


def page_amount(query: dict[str, str]) -> int:
    """lakeFS's ``paginationAmount``: absent or <= 0 means 100, above 1000 means 1000.

    (Real lakeFS's request validator already answers 400 for ``amount`` outside the spec's
    [-1, 1000]; this is the controller's own rule for what gets through, e.g. 0.)"""
    raw = query.get("amount")
    amount = int(raw) if raw not in (None, "") else DEFAULT_PER_PAGE
    if amount > MAX_PER_PAGE:
        return MAX_PER_PAGE
    if amount <= 0:
        return DEFAULT_PER_PAGE
    return amount


def page(items: list[Any], key: Callable[[Any], str], query: dict[str, str]) -> dict[str, Any]:
    """lakeFS pagination: ``after`` is exclusive, ``amount`` as :func:`page_amount`."""
    after = query.get("after", "")
    amount = page_amount(query)
    start = 0
    if after:
        keys = [key(i) for i in items]
        start = keys.index(after) + 1 if after in keys else sum(1 for k in keys if k <= after)
    chunk = items[start : start + amount]
    has_more = start + amount < len(items)
    return {
        "pagination": {
            "has_more": has_more,
            "next_offset": key(chunk[-1]) if (chunk and has_more) else "",
            "results": len(chunk),
            "max_per_page": MAX_PER_PAGE,
        },
        "results": chunk,
    }


class RequestHandler(BaseHTTPRequestHandler):
    owner: LakeFSTestServer
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's urllib3 pool expects
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        body = self._read_body()
        try:
            resp = self.owner.dispatch(method, self.path, self.headers, body)
        except Exception as e:  # a bug in the test server: say so instead of dropping the line
            self.owner.server_errors.append(f"{method} {self.path}: {type(e).__name__}: {e}")
            resp = json_response(500, {"message": f"test server error: {type(e).__name__}: {e}"})
        self.send_response(resp.status)
        if resp.body or resp.status not in (204, 304):
            self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if method != "HEAD" and resp.body:
            self.wfile.write(resp.body)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_HEAD(self) -> None:
        self._handle("HEAD")
