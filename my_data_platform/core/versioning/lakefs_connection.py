"""Calling lakeFS: the SDK client, retries with backoff, and lakeFS errors as ours.

Transient failures (connection errors, HTTP 5xx, 429) are retried with exponential backoff and
jitter, waiting at least what a ``Retry-After`` header asks (capped); requests that are not
idempotent (commit, merge) are only retried when the server cannot have acted on them
(connection refused, 429, 503, lakeFS's "branch is currently locked"). Errors a user can act on
get their own types: a protected branch or read-only repository (403), a failed hook (412), a
commit that lost a race (409). Messages and ``repr`` name the endpoint, never the secret.
:mod:`.lakefs` builds the version store on :class:`LakeFSConnection`.
"""

from __future__ import annotations

import email.utils
import http
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import lakefs
import urllib3
from lakefs.exceptions import (
    BadRequestException,
    ConflictException,
    ForbiddenException,
    NotAuthorizedException,
    NotFoundException,
    ServerException,
    api_exception_handler,
)
from lakefs.reference import generate_listing

from my_data_platform.core.versioning.base import (
    AuthenticationError,
    BackendUnavailableError,
    Change,
    Commit,
    HookFailedError,
    NoChangesError,
    PermissionDeniedError,
    ProtectedBranchError,
    RefExistsError,
    RefNotFoundError,
    UncommittedChangesError,
    VersioningError,
    validate_lakefs_repository_name,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_PAGE = 1000  # the API's maximum page size
# Answers after which the server did not act on the request (throttled: lakeFS's "too many
# attempts" 429 and its KV "slow down" 503; a proxy's 503): safe to resend even a commit.
_RETRY_ALWAYS = {429, 503}
# lakeFS answers 500 "branch is currently locked, try again later" before touching the branch
_LOCKED = "try again later"
_CONNECT_ERRORS = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)

ENV_ENDPOINT = "LAKEFS_ENDPOINT"
ENV_ACCESS_KEY_ID = "LAKEFS_ACCESS_KEY_ID"
ENV_SECRET_ACCESS_KEY = "LAKEFS_SECRET_ACCESS_KEY"
ENV_REPOSITORY = "MDP_LAKEFS_REPOSITORY"
ENV_STORAGE_NAMESPACE = "MDP_LAKEFS_STORAGE_NAMESPACE"


def _public_endpoint(endpoint: str) -> str:
    """The endpoint as we show it: without user:password@ should someone put them there."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")


def error_message(e: ServerException) -> str:
    body = e.body if isinstance(e.body, dict) else {}
    return str(body.get("message") or e.reason or "")


def retry_after(headers: Mapping[str, str] | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date), or
    ``None`` when there is none or it cannot be read. Header names are case-insensitive."""
    value = next(
        (str(v).strip() for k, v in (headers or {}).items() if str(k).lower() == "retry-after"),
        None,
    )
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


class _NotSent(Exception):
    """Internal: a transient failure after which the request may be retried."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait  # what the server asked for (Retry-After), if anything


class LakeFSConnection:
    """The SDK client of one lakeFS repository, and the one place its calls are made."""

    def describe(self) -> str:
        return f"lakeFS repository {self.repository!r} at {self.endpoint}"

    def __init__(
        self,
        endpoint: str,
        access_key_id: str,
        secret_access_key: str,
        repository: str,
        *,
        storage_namespace: str | None = None,
        max_retries: int = 5,
        backoff_base: float = 0.2,
        backoff_max: float = 5.0,
        retry_after_max: float = 30.0,
        timeout: float = 30.0,
        page_size: int = _PAGE,
    ) -> None:
        """``storage_namespace`` (e.g. ``s3://bucket/lakefs/datasets``) is only needed to
        create the repository; lakeFS remembers it afterwards. A request is sent at most
        ``1 + max_retries`` times; a ``Retry-After`` is honoured up to ``retry_after_max``
        seconds per wait, so a server asking for an hour cannot stall a run for an hour."""
        if not endpoint:
            raise VersioningError(f"lakeFS endpoint is empty (set {ENV_ENDPOINT})")
        if not access_key_id or not secret_access_key:
            raise VersioningError(
                f"lakeFS credentials missing (set {ENV_ACCESS_KEY_ID} and {ENV_SECRET_ACCESS_KEY})"
            )
        self.endpoint = _public_endpoint(endpoint)
        self.repository = validate_lakefs_repository_name(repository)
        self.storage_namespace = storage_namespace
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.page_size = max(1, min(page_size, _PAGE))
        self._client = lakefs.Client(
            host=endpoint, username=access_key_id, password=secret_access_key
        )
        # Retries are ours (with backoff and error translation), so urllib3 must not retry
        # underneath; and a dead server must not hang a run.
        try:
            pool = self._client.sdk_client._api.rest_client.pool_manager
            pool.connection_pool_kw["retries"] = False
            pool.connection_pool_kw["timeout"] = urllib3.Timeout(
                connect=min(timeout, 10), read=timeout
            )
        except AttributeError:  # a future SDK layout: keep its defaults, ours still apply
            log.debug("could not tune the lakeFS SDK's connection pool")
        self._repo = lakefs.Repository(self.repository, client=self._client)

    # ---------------------------------------------------------------- calling the server
    _sleep = staticmethod(time.sleep)  # tests record the waits instead of sleeping

    def _call(
        self,
        what: str,
        fn: Callable[[], T],
        *,
        idempotent: bool = True,
        on_error: Callable[[ServerException], Exception | None] | None = None,
        branch: str | None = None,
    ) -> T:
        """Run ``fn`` with retries; translate SDK errors (``on_error`` may claim one).
        ``branch`` is the branch the call writes to, named by protection and hook errors."""
        attempt = 0
        while True:
            try:
                try:
                    with api_exception_handler():
                        return fn()
                except ServerException as e:
                    status = e.status_code or 0
                    msg = error_message(e)
                    if (
                        status in _RETRY_ALWAYS
                        or (status >= 500 and idempotent)
                        or (status == 500 and _LOCKED in msg.lower())
                    ):
                        raise _NotSent(
                            f"{_status_text(status)}: {msg}".rstrip(": "),
                            retry_after(getattr(e, "headers", None)),
                        ) from e
                    if status >= 500:  # not idempotent: the server may have acted on it
                        raise VersioningError(
                            f"lakeFS at {self.endpoint} answered {_status_text(status)} to "
                            f"{what} ({msg}); it may or may not have been applied: check "
                            f"{f'branch {branch!r}' if branch else 'the repository'} before "
                            "retrying"
                        ) from e
                    raise self._translate(what, e, on_error, branch) from e
                except _CONNECT_ERRORS as e:
                    raise _NotSent(f"cannot connect ({type(e).__name__})") from e
                except (urllib3.exceptions.HTTPError, ConnectionError) as e:
                    if not idempotent:
                        raise BackendUnavailableError(
                            self.endpoint,
                            f"lakeFS at {self.endpoint}: connection lost during {what} "
                            f"({type(e).__name__}); check the branch before retrying",
                        ) from e
                    raise _NotSent(f"connection error ({type(e).__name__})") from e
            except _NotSent as transient:
                attempt += 1
                if attempt > self.max_retries:
                    raise BackendUnavailableError(
                        self.endpoint,
                        f"lakeFS at {self.endpoint} is unavailable: {what} failed after "
                        f"{attempt} attempts (last: {transient})",
                        attempts=attempt,
                    ) from transient.__cause__
                delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.0)
                if transient.wait is not None:  # the server said when: at least that, capped
                    delay = max(delay, min(transient.wait, self.retry_after_max))
                log.warning(
                    "lakeFS %s: %s failed (%s); retry %d/%d in %.2fs",
                    self.endpoint,
                    what,
                    transient,
                    attempt,
                    self.max_retries,
                    delay,
                )
                self._sleep(delay)

    def _translate(
        self,
        what: str,
        e: ServerException,
        on_error: Callable[[ServerException], Exception | None] | None,
        branch: str | None = None,
    ) -> Exception:
        if isinstance(e, NotAuthorizedException) and e.status_code == 401:
            return AuthenticationError(
                self.endpoint,
                f"lakeFS at {self.endpoint} rejected the credentials (HTTP 401) during {what}; "
                f"check {ENV_ACCESS_KEY_ID} / {ENV_SECRET_ACCESS_KEY}",
            )
        if on_error is not None:
            claimed = on_error(e)
            if claimed is not None:
                return claimed
        msg = error_message(e)
        low = msg.lower()
        if isinstance(e, ForbiddenException) or e.status_code == 403:
            # lakeFS answers 403 both for policies and for graveler's protection errors; only
            # the message tells them apart (pkg/graveler/errors.go)
            if "protected branch" in low or "read-only repository" in low:
                return ProtectedBranchError(
                    branch, what, msg, where=self.describe(), read_only="read-only" in low
                )
            if "default branch" in low:  # "cannot delete repository default branch"
                return VersioningError(f"{what} refused in {self.describe()}: {msg}")
            return PermissionDeniedError(
                self.endpoint,
                f"lakeFS at {self.endpoint} does not allow {what} for these credentials "
                f"(HTTP 403: {msg or 'forbidden'}); a lakeFS admin must grant it in the "
                f"policies of the user of {ENV_ACCESS_KEY_ID}",
            )
        if e.status_code == 412:
            # a pre-* hook (lakeFS action) aborted the operation; lakeFS's other 412, an
            # If-None-Match upload, says just "Precondition failed" and we never send one
            if low.strip(" .") != "precondition failed":
                return HookFailedError(what, branch, msg, where=self.describe())
            return VersioningError(f"{what}: precondition failed in {self.describe()}")
        if isinstance(e, NotFoundException):
            return RefNotFoundError(f"{what}: not found in {self.describe()} ({msg})")
        if isinstance(e, ConflictException):
            return RefExistsError(f"{what}: already exists in {self.describe()} ({msg})")
        if isinstance(e, BadRequestException):
            if "no changes" in low:
                return NoChangesError(f"{what}: no changes ({msg})")
            if "dirty" in low or "uncommitted" in low:
                return UncommittedChangesError(f"{what}: {msg}")
        return VersioningError(
            f"lakeFS at {self.endpoint}: {what} failed (HTTP {e.status_code}): {msg}"
        )

    def _listing(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        return list(generate_listing(func, *args, amount=self.page_size, **kwargs))

    @staticmethod
    def _to_commit(c: Any) -> Commit:
        return Commit(
            id=c.id,
            message=c.message,
            metadata=dict(c.metadata or {}),
            created_at=datetime.fromtimestamp(c.creation_date, UTC),
            parents=tuple(c.parents),
        )

    def _ref_missing(self, kind: str, name: str) -> Callable[[ServerException], Exception | None]:
        def handler(e: ServerException) -> Exception | None:
            if isinstance(e, NotFoundException):
                return RefNotFoundError(f"{kind} {name!r} not found in {self.describe()}")
            return None

        return handler


class Absent(VersioningError):
    """Internal marker for an expected 'not there' answer."""


def changes_from(raw: Iterator[Any] | list[Any]) -> list[Change]:
    out = []
    for c in raw:
        if getattr(c, "path_type", "object") != "object":
            continue
        if c.type in ("added", "removed", "changed"):
            out.append(Change(c.path, c.type))
        else:  # 'conflict' etc. should not appear in a two-dot diff; keep the path visible
            out.append(Change(c.path, "changed"))
    return sorted(out, key=lambda ch: ch.path)
