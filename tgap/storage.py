"""One storage layer for every stage: local paths, ``s3://`` (MinIO or any S3) and ``gs://``.

A thin adapter of our own over the two clients the project uses, ``minio`` and
``google-cloud-storage`` (no fsspec: its caching and auto-detection add traps against emulators).

URIs
    ``/abs/path``, ``rel/path`` or ``file:///abs/path``   local disk
    ``s3://bucket/key``                                    S3 API through the ``minio`` client
    ``gs://bucket/key``                                    Google Cloud Storage

Environment (on a cluster from a Kubernetes secret; never in pipeline parameters or logs)
    ``TGAP_S3_ENDPOINT``        ``host:port`` or ``http(s)://host:port`` (default ``s3.amazonaws.com``)
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` (optional)
    ``AWS_REGION``              region (optional; unset = ask the server)
    ``TGAP_S3_SECURE``          ``1``/``0``: https or http when the endpoint has no scheme (default 1)
    ``STORAGE_EMULATOR_HOST``   GCS emulator URL: anonymous credentials, project from
                                ``GOOGLE_CLOUD_PROJECT`` (default ``tgap-emulator``)
    (GCS otherwise uses application-default credentials.)
    ``TGAP_STORAGE_RETRIES``    attempts on transient errors (default 5)
    ``TGAP_STORAGE_BACKOFF``    first backoff in seconds, doubled per attempt (default 0.5)
    ``TGAP_STORAGE_TIMEOUT``    connect/read timeout in seconds (default 30)
    ``TGAP_STORAGE_DEADLINE``   no retry starts after this many seconds of one call (default 120)
    ``TGAP_CACHE``              download cache folder (default ``~/.cache/tgap``)

Writes are atomic: local files go through a temp file + ``os.replace``; an S3 or GCS object is
only visible under its name once its upload has completed (single PUT, multipart or resumable).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

log = logging.getLogger(__name__)
T = TypeVar("T")


class StorageError(ValueError):
    """A read, write or listing failed; the message names the URI and what went wrong."""


# --------------------------------------------------------------------------- URIs


def is_remote(uri: str | Path) -> bool:
    """True for ``s3://`` and ``gs://`` URIs, False for local paths and ``file://``."""
    return str(uri).startswith(("s3://", "gs://"))


def _split(uri: str) -> tuple[str, str, str]:
    """``s3://b/k`` -> ("s3", "b", "k"); a local path -> ("file", "", path)."""
    uri = str(uri)
    if uri.startswith("file://"):
        return "file", "", urlparse(uri).path
    if not is_remote(uri):
        if "://" in uri:
            raise StorageError(
                f"{uri}: unsupported URI scheme (expected a path, file://, s3:// or gs://)"
            )
        return "file", "", uri
    scheme, rest = uri.split("://", 1)
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri}: no bucket name")
    return scheme, bucket, key


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI or path with ``/`` (absolute parts win, like ``os.path.join``)."""
    out = str(uri)
    for part in parts:
        part = str(part)
        if is_remote(part) or part.startswith(("/", "file://")):
            out = part
        elif part:
            out = out.rstrip("/") + "/" + part if out else part
    return out


def local_path(uri: str | Path) -> Path:
    """The local path of a plain path or ``file://`` URI."""
    scheme, _, path = _split(str(uri))
    if scheme != "file":
        raise StorageError(f"{uri}: not a local path")
    return Path(path)


# --------------------------------------------------------------------------- retries


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise StorageError(f"environment {name}={raw!r}: expected a number") from None


def _retrying(
    uri: str, what: str, call: Callable[[], T], transient: Callable[[Exception], bool]
) -> T:
    """Run ``call``; retry transient failures with exponential backoff, then fail clearly."""
    attempts = max(1, int(_env_float("TGAP_STORAGE_RETRIES", 5)))
    backoff = _env_float("TGAP_STORAGE_BACKOFF", 0.5)
    # Bounded in time too: a blackholed endpoint costs a timeout per attempt.
    deadline = time.monotonic() + _env_float("TGAP_STORAGE_DEADLINE", 120.0)
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except StorageError:
            raise
        except Exception as exc:
            if not transient(exc):
                raise
            wait = backoff * 2 ** (attempt - 1)
            if attempt == attempts or time.monotonic() + wait > deadline:
                raise StorageError(
                    f"{uri}: {what} failed after {attempt} attempts: endpoint unreachable or "
                    f"unavailable ({type(exc).__name__}: {_short(exc)})"
                ) from None
            log.warning(
                "%s: %s failed (%s), retry %d/%d in %.1fs",
                uri,
                what,
                type(exc).__name__,
                attempt,
                attempts - 1,
                wait,
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:200]


# --------------------------------------------------------------------------- backends


@dataclass(frozen=True)
class _Object:
    key: str
    size: int
    etag: str


class _Local:
    scheme = "file"

    def get(self, uri: str, path: str) -> bytes:
        p = Path(path)
        if p.is_dir():
            raise StorageError(f"{uri}: is a folder, expected a file")
        try:
            return p.read_bytes()
        except FileNotFoundError:
            raise StorageError(f"{uri}: no such file") from None

    def put(self, uri: str, path: str, data: bytes) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def stat(self, uri: str, path: str) -> _Object | None:
        p = Path(path)
        if not p.is_file():
            return None
        st = p.stat()
        return _Object(path, st.st_size, f"{st.st_mtime_ns}")

    def list(self, uri: str, path: str) -> list[_Object]:
        root = Path(path)
        if not root.is_dir():
            raise StorageError(f"{uri}: no such folder")
        out = []
        for dirpath, _, files in os.walk(root):
            for name in files:
                p = Path(dirpath) / name
                st = p.stat()
                out.append(_Object(str(p), st.st_size, f"{st.st_mtime_ns}"))
        return sorted(out, key=lambda o: o.key)


class _S3:
    scheme = "s3"

    def __init__(self) -> None:
        raw = os.environ.get("TGAP_S3_ENDPOINT", "") or "s3.amazonaws.com"
        if "://" in raw:
            parsed = urlparse(raw)
            endpoint, secure = parsed.netloc, parsed.scheme == "https"
        else:
            endpoint = raw
            secure = os.environ.get("TGAP_S3_SECURE", "1").strip().lower() not in (
                "0",
                "false",
                "no",
            )
        self.endpoint = endpoint
        self.client = _minio_client(
            endpoint,
            os.environ.get("AWS_ACCESS_KEY_ID") or None,
            os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            os.environ.get("AWS_SESSION_TOKEN") or None,
            secure,
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
            _env_float("TGAP_STORAGE_TIMEOUT", 30.0),
        )

    @staticmethod
    def _transient(exc: Exception) -> bool:
        import urllib3
        from minio.error import S3Error, ServerError

        if isinstance(exc, ServerError):
            return exc.status_code >= 500
        if isinstance(exc, S3Error):
            return exc.code in ("InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout")
        return isinstance(exc, urllib3.exceptions.HTTPError | OSError)

    def _call(self, uri: str, what: str, call: Callable[[], T]) -> T:
        from minio.error import S3Error

        try:
            return _retrying(uri, f"{what} (S3 endpoint {self.endpoint})", call, self._transient)
        except S3Error as exc:
            raise StorageError(_s3_message(uri, what, exc)) from None

    def get(self, uri: str, bucket: str, key: str) -> bytes:
        def call() -> bytes:
            response = self.client.get_object(bucket, key)
            try:
                data = response.read()
                expected = response.headers.get("Content-Length")
                if expected is not None and int(expected) != len(data):
                    raise OSError(f"short read: {len(data)} of {expected} bytes")
                return data
            finally:
                response.close()
                response.release_conn()

        return self._call(uri, "read", call)

    def put(self, uri: str, bucket: str, key: str, data: bytes) -> None:
        self._call(
            uri, "write", lambda: self.client.put_object(bucket, key, io.BytesIO(data), len(data))
        )

    def remove(self, uri: str, bucket: str, key: str) -> None:
        # S3 answers a delete of a missing key with success too.
        self._call(uri, "delete", lambda: self.client.remove_object(bucket, key))

    def stat(self, uri: str, bucket: str, key: str) -> _Object | None:
        from minio.error import S3Error

        def call() -> _Object | None:
            try:
                st = self.client.stat_object(bucket, key)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NotFound", "ResourceNotFound"):
                    return None
                raise
            return _Object(key, int(st.size or 0), (st.etag or "").strip('"'))

        if not key:
            return None
        return self._call(uri, "stat", call)

    def list(self, uri: str, bucket: str, prefix: str) -> list[_Object]:
        def call() -> list[_Object]:
            objs = self.client.list_objects(bucket, prefix=prefix, recursive=True)
            out = [
                _Object(o.object_name, int(o.size or 0), (o.etag or "").strip('"'))
                for o in objs
                if not o.is_dir and o.object_name and not o.object_name.endswith("/")
            ]
            if not out and not self.client.bucket_exists(bucket):
                raise StorageError(
                    f"{uri}: bucket {bucket!r} does not exist (S3 endpoint {self.endpoint})"
                )
            return out

        return sorted(self._call(uri, "list", call), key=lambda o: o.key)


def _s3_message(uri: str, what: str, exc) -> str:
    hints = {
        "NoSuchBucket": "bucket does not exist",
        "NoSuchKey": "no such object",
        "AccessDenied": "access denied (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and permissions)",
        "InvalidAccessKeyId": "wrong credentials: unknown AWS_ACCESS_KEY_ID",
        "SignatureDoesNotMatch": "wrong credentials: AWS_SECRET_ACCESS_KEY does not match the key id",
    }
    return f"{uri}: {what} failed: {hints.get(exc.code, exc.code)} ({exc.code}: {exc.message})"


@lru_cache(maxsize=8)
def _minio_client(endpoint, access_key, secret_key, session_token, secure, region, timeout):
    import urllib3
    from minio import Minio

    # Our own retry loop (bounded, logged) replaces urllib3's: retries=0 here.
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        maxsize=32,
        retries=urllib3.Retry(total=0, connect=0, read=0, redirect=3),
    )
    return Minio(
        endpoint,
        access_key=access_key,
        secret_key=secret_key,
        session_token=session_token,
        secure=secure,
        region=region,
        http_client=http,
    )


_NO_GCS_CREDENTIALS = (
    "no Google credentials found (run `gcloud auth application-default login`, set "
    "GOOGLE_APPLICATION_CREDENTIALS, or STORAGE_EMULATOR_HOST for an emulator)"
)


class _GCS:
    scheme = "gs"

    def __init__(self) -> None:
        self.emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
        from google.auth import exceptions as auth_exc

        try:
            self.client = _gcs_client(self.emulator, os.environ.get("GOOGLE_CLOUD_PROJECT", ""))
        except auth_exc.DefaultCredentialsError:
            raise StorageError(_NO_GCS_CREDENTIALS) from None
        self.timeout = _env_float("TGAP_STORAGE_TIMEOUT", 30.0)

    @staticmethod
    def _transient(exc: Exception) -> bool:
        import requests
        from google.api_core import exceptions as gexc

        return isinstance(
            exc,
            gexc.ServiceUnavailable
            | gexc.InternalServerError
            | gexc.TooManyRequests
            | gexc.GatewayTimeout
            | requests.ConnectionError
            | requests.Timeout,
        )

    def _call(self, uri: str, bucket: str, what: str, call: Callable[[], T]) -> T:
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        where = f" (GCS emulator {self.emulator})" if self.emulator else ""
        try:
            return _retrying(uri, f"{what}{where}", call, self._transient)
        except gexc.NotFound:
            if self.client.lookup_bucket(bucket, timeout=self.timeout, retry=None) is None:
                raise StorageError(
                    f"{uri}: {what} failed: bucket {bucket!r} does not exist"
                ) from None
            raise StorageError(f"{uri}: {what} failed: no such object") from None
        except (gexc.Unauthorized, gexc.Forbidden) as exc:
            raise StorageError(
                f"{uri}: {what} failed: access denied (check application-default credentials / "
                f"GOOGLE_APPLICATION_CREDENTIALS) ({exc.code})"
            ) from None
        except auth_exc.DefaultCredentialsError:
            raise StorageError(f"{uri}: {what} failed: {_NO_GCS_CREDENTIALS}") from None

    def get(self, uri: str, bucket: str, key: str) -> bytes:
        blob = self.client.bucket(bucket).blob(key)
        # download_as_bytes checks the server's checksum, so a short read is an error.
        return self._call(
            uri, bucket, "read", lambda: blob.download_as_bytes(timeout=self.timeout, retry=None)
        )

    def put(self, uri: str, bucket: str, key: str, data: bytes) -> None:
        blob = self.client.bucket(bucket).blob(key)
        # > 8 MiB goes through a resumable upload; the object appears only once it is finalised.
        self._call(
            uri,
            bucket,
            "write",
            lambda: blob.upload_from_string(data, timeout=self.timeout, retry=None),
        )

    def remove(self, uri: str, bucket: str, key: str) -> None:
        from google.api_core import exceptions as gexc

        def call() -> None:
            try:
                self.client.bucket(bucket).blob(key).delete(timeout=self.timeout, retry=None)
            except gexc.NotFound:
                pass  # already gone: the same outcome as S3's

        self._call(uri, bucket, "delete", call)

    def stat(self, uri: str, bucket: str, key: str) -> _Object | None:
        if not key:
            return None

        def call() -> _Object | None:
            blob = self.client.bucket(bucket).get_blob(key, timeout=self.timeout, retry=None)
            return (
                None
                if blob is None
                else _Object(key, int(blob.size or 0), blob.etag or blob.md5_hash or "")
            )

        return self._call(uri, bucket, "stat", call)

    def list(self, uri: str, bucket: str, prefix: str) -> list[_Object]:
        def call() -> list[_Object]:
            blobs = self.client.list_blobs(bucket, prefix=prefix, timeout=self.timeout, retry=None)
            return [
                _Object(b.name, int(b.size or 0), b.etag or b.md5_hash or "")
                for b in blobs
                if not b.name.endswith("/")
            ]

        return sorted(self._call(uri, bucket, "list", call), key=lambda o: o.key)


@lru_cache(maxsize=4)
def _gcs_client(emulator: str, project: str):
    from google.cloud import storage

    if emulator:
        # The client reads STORAGE_EMULATOR_HOST itself; anonymous credentials and an explicit
        # project stop it from looking for credentials on the cloud metadata server.
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=project or "tgap-emulator", credentials=AnonymousCredentials()
        )
    return storage.Client(project=project or None)


def _backend(scheme: str):
    if scheme == "s3":
        return _S3()
    if scheme == "gs":
        return _GCS()
    return _Local()


def _stat(uri: str) -> _Object | None:
    scheme, bucket, key = _split(uri)
    if key.endswith("/"):  # a folder (some stores answer HEAD on folder markers)
        return None
    if scheme == "file":
        return _Local().stat(uri, key)
    return _backend(scheme).stat(uri, bucket, key)


def _list(uri: str) -> tuple[str, list[_Object]]:
    """Objects under folder ``uri`` and the key prefix they start with."""
    scheme, bucket, key = _split(uri)
    if scheme == "file":
        return key.rstrip("/") + "/", _Local().list(uri, key)
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    return prefix, _backend(scheme).list(uri, bucket, prefix)


def _to_uri(uri: str, key: str) -> str:
    scheme, bucket, _ = _split(uri)
    if scheme == "file":
        return f"file://{key}" if str(uri).startswith("file://") else key
    return f"{scheme}://{bucket}/{key}"


# --------------------------------------------------------------------------- public API


def read_bytes(uri: str | Path) -> bytes:
    """The whole content of a file or object."""
    uri = str(uri)
    scheme, bucket, key = _split(uri)
    if scheme == "file":
        return _Local().get(uri, key)
    return _backend(scheme).get(uri, bucket, key)


def write_bytes(uri: str | Path, data: bytes) -> None:
    """Write ``data`` atomically: readers see the old content or the new, never half of it."""
    uri = str(uri)
    scheme, bucket, key = _split(uri)
    if scheme == "file":
        _Local().put(uri, key, data)
        return
    if not key:
        raise StorageError(f"{uri}: no object key")
    _backend(scheme).put(uri, bucket, key, bytes(data))


def remove(uri: str | Path) -> None:
    """Delete one file or object; one that does not exist is not an error."""
    uri = str(uri)
    scheme, bucket, key = _split(uri)
    if scheme == "file":
        Path(key).unlink(missing_ok=True)
        return
    if not key:
        raise StorageError(f"{uri}: no object key")
    _backend(scheme).remove(uri, bucket, key)


def exists(uri: str | Path) -> bool:
    """True when ``uri`` is a file/object, or a folder/prefix holding at least one object."""
    uri = str(uri)
    scheme, bucket, key = _split(uri)
    if scheme == "file":
        return Path(key).exists()
    if _stat(uri) is not None:
        return True
    try:
        return bool(_list(uri)[1])
    except StorageError as exc:
        if "does not exist" in str(exc):
            return False
        raise


def list_uris(uri_prefix: str | Path) -> list[str]:
    """URIs of every file/object below the folder ``uri_prefix`` (recursive, sorted).

    An empty remote prefix gives ``[]``; a missing bucket or local folder is a StorageError.
    """
    uri = str(uri_prefix)
    _, objects = _list(uri)
    return [_to_uri(uri, o.key) for o in objects]


def list_sizes(uri_prefix: str | Path) -> dict[str, int]:
    """Like ``list_uris`` but ``{path relative to the prefix: size in bytes}``, in one listing."""
    uri = str(uri_prefix)
    prefix, objects = _list(uri)
    return {o.key[len(prefix) :]: o.size for o in objects}


def listing(uri: str | Path) -> list[tuple[str, int, str]]:
    """``(name, size, etag or mtime)`` of the file/object ``uri``, or of every object below the
    folder/prefix ``uri`` (names relative to it, sorted): what a content fingerprint hashes.

    A missing file, folder or bucket is a StorageError naming it.
    """
    uri = str(uri)
    found = _stat(uri)
    if found is not None:
        return [(Path(found.key).name, found.size, found.etag)]
    prefix, objects = _list(uri)
    if not objects:
        raise StorageError(f"{uri}: no such file, or an empty folder")
    return [(o.key[len(prefix) :], o.size, o.etag) for o in objects]


def default_cache_dir() -> Path:
    return Path(os.environ.get("TGAP_CACHE") or Path.home() / ".cache" / "tgap")


def download_to_cache(uri: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local path holding the file or folder at ``uri``.

    Local paths are returned as they are (no copy). A remote object, or every object under a
    remote prefix, is downloaded once into ``cache_dir`` under a key made of the URI and the
    objects' etags and sizes, so a changed object is fetched again and an unchanged one is not.
    The cache entry appears atomically (download into a temp folder, then rename).
    """
    uri = str(uri)
    if not is_remote(uri):
        path = local_path(uri)
        if not path.exists():
            raise StorageError(f"{uri}: no such file or folder")
        return path
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    obj = _stat(uri)
    if obj is not None:
        objects, prefix, single = (
            [obj],
            obj.key.rsplit("/", 1)[0] + "/" if "/" in obj.key else "",
            True,
        )
    else:
        prefix, objects = _list(uri)
        if not objects:
            raise StorageError(
                f"{uri}: no object and no objects under this prefix (empty or missing)"
            )
        single = False
    digest = hashlib.sha256(uri.rstrip("/").encode())
    for o in objects:
        digest.update(f"\n{o.key}\t{o.size}\t{o.etag}".encode())
    name = uri.rstrip("/").rsplit("/", 1)[-1] or "root"
    entry = cache / f"{digest.hexdigest()[:20]}-{name}"
    result = entry / name if single else entry
    if entry.is_dir():
        return result
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{entry.name}.partial-"))
    try:

        def fetch(o: _Object) -> None:
            rel = o.key[len(prefix) :]
            if ".." in Path(rel).parts:
                raise StorageError(f"{uri}: object key {o.key!r} escapes the download folder")
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            data = read_bytes(_to_uri(uri, o.key))
            if len(data) != o.size:
                raise StorageError(
                    f"{_to_uri(uri, o.key)}: read {len(data)} bytes, listing says {o.size}"
                )
            target.write_bytes(data)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(fetch, objects))
        try:
            os.replace(tmp, entry)
        except OSError:
            if not entry.is_dir():  # another process won the race: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("downloaded %s (%d objects) to %s", uri, len(objects), entry)
    return result


def upload_folder(local_dir: str | Path, uri: str | Path) -> list[str]:
    """Copy every file under ``local_dir`` to the folder ``uri``; return the written URIs.

    Each object is written atomically. A local destination is built in a temp folder and
    renamed into place, so it appears whole; on an object store the objects appear one by one.
    """
    src, uri = Path(local_dir), str(uri)
    if not src.is_dir():
        raise StorageError(f"{src}: not a folder")
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if not is_remote(uri):
        dest = local_path(uri)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise StorageError(f"{uri}: already exists and is not empty")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(src, tmp)
            if dest.exists():
                dest.rmdir()
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return [join(uri, p.relative_to(src).as_posix()) for p in files]
    targets = [join(uri, p.relative_to(src).as_posix()) for p in files]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda pt: write_bytes(pt[1], pt[0].read_bytes()), zip(files, targets, strict=True)
            )
        )
    return targets
