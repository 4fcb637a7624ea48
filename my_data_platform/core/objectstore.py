"""Object storage behind one interface: a local folder (default) or S3.

Raw payloads and lake Parquet live here; metadata lives in the OLTP database and the
warehouse. The guarantees both implementations give are in docs/storage.md.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import stat
import tempfile
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from my_data_platform.core.fsutil import TEMP_PREFIX, atomic_path

#: A key segment: the ASCII characters below, or any non-ASCII character (checked further by
#: ``_segment_ok``). Always used with ``fullmatch``: ``$`` would accept a trailing newline.
_SEGMENT = re.compile(r"[A-Za-z0-9._=+@,:\-\x80-\U0010ffff][A-Za-z0-9._=+@,:\- \x80-\U0010ffff]*")


def _segment_ok(seg: str) -> bool:
    """UTF-8 names are keys; control, format, private-use, unassigned, surrogate (a byte
    that was not UTF-8) and non-ASCII space characters are not. NFC form only to validate."""
    if _SEGMENT.fullmatch(seg) is None:
        return False
    if seg.isascii():
        return True
    nfc = unicodedata.normalize("NFC", seg)
    return all(c.isascii() or unicodedata.category(c)[0] in "LMNPS" for c in nfc)


class ObjectStoreError(RuntimeError):
    """An object-store operation failed; the message names the store and the key."""


class InvalidKeyError(ValueError):
    """A key is not a safe relative object key."""


class ObjectNotFoundError(ObjectStoreError, KeyError):
    """The key does not exist in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def validate_key(key: str, *, allow_prefix: bool = False) -> str:
    """Return ``key`` if it is a safe relative object key, else raise :class:`InvalidKeyError`.

    ``allow_prefix`` accepts the empty string and a trailing ``/`` (for listing).
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"object key must be a string, got {type(key).__name__}")
    if allow_prefix:
        if key == "":
            return key
        body = key[:-1] if key.endswith("/") else key
    else:
        body = key
    if body == "":
        raise InvalidKeyError("object key must not be empty")
    if body.startswith("/") or "\\" in body or "\x00" in body:
        raise InvalidKeyError(f"object key must be relative and use '/': {key!r}")
    for seg in body.split("/"):
        if seg in ("", ".", ".."):
            raise InvalidKeyError(f"object key has an empty, '.' or '..' segment: {key!r}")
        if not _segment_ok(seg):
            raise InvalidKeyError(f"object key has unsupported characters: {key!r}")
    return key


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    """A version token: S3's ETag, or ``<mtime_ns>-<size>`` for local files."""


class ObjectStore(ABC):
    """The interface every implementation provides."""

    @abstractmethod
    def describe(self) -> str:
        """A human-readable location, never containing secrets."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> ObjectInfo: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order, strictly after ``start_after`` if given."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def uri(self, key: str) -> str:
        """A location DuckDB and Polars can read (a local path or ``s3://bucket/key``)."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Publish a finished local file under ``key`` atomically."""

    @abstractmethod
    def copy(self, src: str, dst: str) -> ObjectInfo:
        """Publish object ``src`` under ``dst`` too, atomically, without the bytes passing
        through this process (a hard link where the filesystem allows, else a file copy; a
        server-side copy on S3)."""

    @abstractmethod
    def key_of(self, uri: str) -> str | None:
        """The key (or, for a URI ending in ``/``, the prefix) that ``uri()`` maps to ``uri``;
        None when ``uri`` lies outside this store."""

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def delete_prefix(self, prefix: str) -> int:
        validate_key(prefix, allow_prefix=True)
        keys = [o.key for o in self.list(prefix)]
        for k in keys:
            self.delete(k)
        return len(keys)

    @contextlib.contextmanager
    def writing(self, key: str, suffix: str = "") -> Iterator[Path]:
        """Yield a local temp path; publish it under ``key`` only if the block succeeds."""
        validate_key(key)
        tmpdir = Path(tempfile.mkdtemp(prefix="mdp-write-"))
        try:
            path = tmpdir / f"part{suffix}"
            yield path
            self.put_file(key, path)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def configure_duckdb(self, conn: Any) -> None:  # noqa: B027 - optional hook
        """Make ``uri()`` locations readable from a DuckDB connection (no-op locally)."""

    def polars_storage_options(self) -> dict[str, str] | None:
        return None


_log = logging.getLogger(__name__)


class LinkRefusedError(ObjectStoreError):
    """A key's path passes through a symbolic link: the local store never follows one."""


class NotARegularFileError(ObjectStoreError):
    """A key names a folder, FIFO, socket or device, not an object."""


class LocalObjectStore(ObjectStore):
    """A folder on disk: the embedded default (``$MDP_DATA_DIR/lake``).

    It never follows a symbolic link below its root, wherever the link points (inside or out):
    the store makes none itself, a link placed by someone else can be retargeted at any time,
    and a link that stays inside today would make one object readable under two keys. Listing
    skips links (and anything that is not a regular file or folder); every other operation on
    a key whose path passes through one raises :class:`LinkRefusedError`.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _path(self, key: str) -> Path:
        path = self.root / validate_key(key)
        # The root is resolved and keys hold no '.' or '..', so the resolved path differs
        # from the plain one exactly when an existing component is a symbolic link.
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):  # a link loop
            resolved = None
        if resolved != path:
            where = (
                "outside"
                if resolved is None or not resolved.is_relative_to(self.root)
                else "inside"
            )
            raise LinkRefusedError(
                f"{key!r} in {self.describe()} passes through a symbolic link (pointing "
                f"{where} the store); the local store never follows links"
            )
        return path

    def _info(self, key: str, path: Path) -> ObjectInfo:
        st = path.stat()
        return ObjectInfo(key=key, size=st.st_size, etag=f"{st.st_mtime_ns}-{st.st_size}")

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        with self.writing(key) as tmp:
            tmp.write_bytes(data)
        return self._info(key, self._path(key))

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        with self.writing(key) as tmp:
            shutil.copyfile(path, tmp)
        return self._info(key, self._path(key))

    def copy(self, src: str, dst: str) -> ObjectInfo:
        source = self._path(src)
        if not source.is_file():
            raise ObjectNotFoundError(f"{src!r} not found in {self.describe()}")
        with self.writing(dst) as tmp:
            try:
                os.link(source, tmp)
            except OSError:  # another filesystem, or links not supported
                shutil.copyfile(source, tmp)
        return self._info(dst, self._path(dst))

    def key_of(self, uri: str) -> str | None:
        path = Path(uri)
        if "://" in uri or not path.is_absolute():
            return None
        try:
            rel = path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return None
        if rel == ".":
            return "" if uri.endswith("/") else None
        key = rel + "/" if uri.endswith("/") else rel
        try:
            return validate_key(key, allow_prefix=key.endswith("/"))
        except InvalidKeyError:
            return None

    @contextlib.contextmanager
    def writing(self, key: str, suffix: str = "") -> Iterator[Path]:
        # Every local write goes through here: a temp file beside its destination (hidden from
        # ``list``), published by a rename, removed if the block fails.
        with atomic_path(self._path(key), suffix=suffix) as tmp:
            yield tmp

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            # O_NOFOLLOW: a link swapped in after the check above is refused, not followed;
            # O_NONBLOCK: a FIFO does not hang the open
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{key!r} not found in {self.describe()}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LinkRefusedError(
                    f"{key!r} in {self.describe()} is a symbolic link; the local store never "
                    "follows links"
                ) from None
            raise
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise NotARegularFileError(f"{key!r} in {self.describe()} is not a regular file")
            return f.read()

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return self._info(key, path)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        validate_key(prefix, allow_prefix=True)
        # Walk only the directory the prefix names, in sorted order, pruning subtrees that
        # sort before ``start_after`` so a resumed listing does not re-stat old files.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start_dir = self.root / base if base else self.root
        if base:
            try:
                self._path(base)
            except LinkRefusedError as exc:
                _log.warning("listing skips %s", exc)
                return
        if not start_dir.is_dir():
            return
        yield from self._walk(start_dir, base, prefix, start_after)

    def _walk(
        self, directory: Path, rel: str, prefix: str, start_after: str | None
    ) -> Iterator[ObjectInfo]:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                continue
            key = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_symlink():
                _log.warning(
                    "listing skips %r in %s: a symbolic link is never followed",
                    key,
                    self.describe(),
                )
                continue
            if entry.is_dir(follow_symlinks=False):
                dir_key = key + "/"
                if not (dir_key.startswith(prefix) or prefix.startswith(dir_key)):
                    continue
                # every key under dir_key is <= dir_key + '\xff...'; skip if all are too old
                if start_after is not None and not (dir_key + "\U0010ffff" > start_after):
                    continue
                yield from self._walk(Path(entry.path), key, prefix, start_after)
            elif not entry.is_file(follow_symlinks=False):
                continue  # a FIFO, socket or device is not an object
            elif key.startswith(prefix) and (start_after is None or key > start_after):
                st = entry.stat(follow_symlinks=False)
                yield ObjectInfo(key=key, size=st.st_size, etag=f"{st.st_mtime_ns}-{st.st_size}")

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def uri(self, key: str) -> str:
        return str(self._path(key))


class S3ObjectStore(ObjectStore):
    """S3 or any S3-compatible store, through a boto3 client (dagster-aws builds it)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self._credentials = credentials or {}

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _strip(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _call(self, what: str, key: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFoundError(f"{key!r} not found in {self.describe()}") from None
            raise ObjectStoreError(f"{what} {key!r} failed on {self.describe()}: {code}") from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(
                f"{what} {key!r} failed: cannot reach {self.describe()}: {exc}"
            ) from exc

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        validate_key(key)
        resp = self._call(
            "put", key, self.client.put_object, Bucket=self.bucket, Key=self._full(key), Body=data
        )
        return ObjectInfo(key=key, size=len(data), etag=resp.get("ETag", "").strip('"'))

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        # One PUT is atomic on S3: readers see the old object or the new one.
        return self.put_bytes(key, Path(path).read_bytes())

    def copy(self, src: str, dst: str) -> ObjectInfo:
        validate_key(src)
        validate_key(dst)
        # A managed copy: one CopyObject, or a multipart copy for objects over its size limit.
        self._call(
            "copy",
            src,
            self.client.copy,
            CopySource={"Bucket": self.bucket, "Key": self._full(src)},
            Bucket=self.bucket,
            Key=self._full(dst),
        )
        info = self.head(dst)
        if info is None:  # pragma: no cover - the store acknowledged the copy
            raise ObjectStoreError(f"copy of {src!r} to {dst!r} vanished on {self.describe()}")
        return info

    def key_of(self, uri: str) -> str | None:
        head = f"s3://{self.bucket}/" + (f"{self.prefix}/" if self.prefix else "")
        if not uri.startswith(head):
            return None
        key = uri[len(head) :]
        try:
            return validate_key(key, allow_prefix=key == "" or key.endswith("/"))
        except InvalidKeyError:
            return None

    def get_bytes(self, key: str) -> bytes:
        validate_key(key)
        resp = self._call(
            "get", key, self.client.get_object, Bucket=self.bucket, Key=self._full(key)
        )
        return resp["Body"].read()

    def head(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        try:
            resp = self._call(
                "head", key, self.client.head_object, Bucket=self.bucket, Key=self._full(key)
            )
        except ObjectNotFoundError:
            return None
        return ObjectInfo(key=key, size=resp["ContentLength"], etag=resp["ETag"].strip('"'))

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        validate_key(prefix, allow_prefix=True)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._full(prefix)}
        if start_after:
            kwargs["StartAfter"] = self._full(start_after)
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call("list", prefix or "/", lambda: iter(paginator.paginate(**kwargs)))
        while True:
            page = self._call("list", prefix or "/", lambda: next(pages, None))
            if page is None:
                return
            for obj in page.get("Contents", []):
                yield ObjectInfo(
                    key=self._strip(obj["Key"]), size=obj["Size"], etag=obj["ETag"].strip('"')
                )

    def delete(self, key: str) -> None:
        validate_key(key)
        self._call(
            "delete", key, self.client.delete_object, Bucket=self.bucket, Key=self._full(key)
        )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(validate_key(key))}"

    def duckdb_secret_params(self) -> dict[str, str]:
        params: dict[str, str] = {"REGION": self.region}
        if self.endpoint_url:
            from urllib.parse import urlparse

            u = urlparse(self.endpoint_url)
            params["ENDPOINT"] = u.netloc
            params["USE_SSL"] = "true" if u.scheme == "https" else "false"
            params["URL_STYLE"] = "path"
        if self._credentials.get("aws_access_key_id"):
            params["KEY_ID"] = self._credentials["aws_access_key_id"]
            params["SECRET"] = self._credentials.get("aws_secret_access_key", "")
        return params

    def configure_duckdb(self, conn: Any) -> None:
        from my_data_platform.core.duck import load_extension

        load_extension(conn, "httpfs")
        # CREATE SECRET takes literals only (no bound parameters): values are quoted, and the
        # option names come from the fixed set above.
        params = {**self.duckdb_secret_params(), "SCOPE": f"s3://{self.bucket}"}
        parts = ", ".join(f"{k} {_sql_literal(v)}" for k, v in params.items())
        conn.execute(f"CREATE OR REPLACE SECRET mdp_s3 (TYPE s3, {parts})")

    def polars_storage_options(self) -> dict[str, str] | None:
        opts = {"aws_region": self.region}
        if self.endpoint_url:
            opts["aws_endpoint_url"] = self.endpoint_url
            opts["aws_allow_http"] = "true" if self.endpoint_url.startswith("http:") else "false"
        if self._credentials.get("aws_access_key_id"):
            opts["aws_access_key_id"] = self._credentials["aws_access_key_id"]
            opts["aws_secret_access_key"] = self._credentials.get("aws_secret_access_key", "")
        return opts


def _sql_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"
