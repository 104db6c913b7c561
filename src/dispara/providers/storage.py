"""Where audio files live: Supabase Storage over its REST API, or a local directory (the embedded default).

Both stream: uploads read the source in chunks, downloads spool to a temporary file past 1 MiB, so a worker
running many jobs of large files holds none of them whole in memory (docs/audio.md).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Protocol, cast
from urllib.parse import quote

import httpx

import dispara
from dispara.errors import ConfigError, PermanentServiceError, ServiceError, TransientServiceError
from dispara.providers.health import storage_error, storage_headers
from dispara.redact import public_url

CHUNK: Final = 256 * 1024
SPOOL_MAX: Final = 1024 * 1024  # a download larger than this goes to a temporary file, not memory
_BUCKET: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_AUTH_CODES: Final = frozenset({"AccessDenied", "InvalidJWT", "Unauthorized", "InvalidSignature"})


class StoragePathError(PermanentServiceError):
    """A bucket or object path that could escape its place (`..`, absolute, control characters)."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    bucket: str
    path: str
    bytes: int
    content_type: str


@dataclass(slots=True)
class Blob:
    """A downloaded object: read `file` from the start; `size` in bytes."""

    file: BinaryIO
    size: int
    content_type: str | None


class Storage(Protocol):
    """What audio jobs need from storage. Implementations are shared between threads."""

    label: str

    def upload(self, bucket: str, path: str, source: BinaryIO, *, content_type: str) -> StoredObject:
        """Store (or replace) the object with the bytes read from `source`."""
        ...

    def download(
        self, bucket: str, path: str, *, max_bytes: int | None = None
    ) -> contextlib.AbstractContextManager[Blob]:
        """The object's bytes; PermanentServiceError if it is missing or larger than `max_bytes`."""
        ...

    def media_source(self, bucket: str, path: str, *, expires_s: int) -> str:
        """What Evolution can fetch the object from: a signed URL, or the bytes as base64."""
        ...

    def close(self) -> None: ...


def check_location(bucket: str, path: str) -> None:
    """Refuse a bucket or path that is empty, absolute, has `.`/`..` segments or control characters."""
    if not _BUCKET.fullmatch(bucket or ""):
        raise StoragePathError(f"bucket {bucket!r}: use letters, digits, '.', '_' or '-'")
    segments = (path or "").split("/")
    bad = (
        not path
        or len(path) > 1024
        or "\\" in path
        or any(ord(c) < 32 or ord(c) == 127 for c in path)
        or any(s in ("", ".", "..") for s in segments)
    )
    if bad:
        raise StoragePathError(f"object path {path!r}: use a relative path like dir/name.ogg, without '..'")


def _too_large(bucket: str, path: str, max_bytes: int) -> PermanentServiceError:
    mb = max_bytes / 1_000_000
    return PermanentServiceError(f"{bucket}/{path} is larger than {mb:g} MB: refused before any upload")


def _chunks(source: BinaryIO) -> Iterator[bytes]:
    while chunk := source.read(CHUNK):
        yield chunk


def _remaining(source: BinaryIO) -> int | None:
    try:
        here = source.tell()
        end = source.seek(0, os.SEEK_END)
        source.seek(here)
    except (OSError, ValueError):
        return None
    return end - here


class LocalStorage:
    """Objects as files under `root/bucket/path`; an upload lands whole or not at all (rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()
        self.label = f"local storage {self.root}"

    def file(self, bucket: str, path: str) -> Path:
        check_location(bucket, path)
        return self.root / bucket / path

    def upload(self, bucket: str, path: str, source: BinaryIO, *, content_type: str) -> StoredObject:
        target = self.file(bucket, path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(source):
                    out.write(chunk)
                    size += len(chunk)
            Path(tmp).replace(target)
        except OSError as exc:
            with contextlib.suppress(NameError, OSError):
                Path(tmp).unlink()
            raise TransientServiceError(f"cannot write {target}: {exc.strerror or exc}") from None
        return StoredObject(bucket, path, size, content_type)

    @contextlib.contextmanager
    def download(self, bucket: str, path: str, *, max_bytes: int | None = None) -> Iterator[Blob]:
        target = self.file(bucket, path)
        try:
            handle = target.open("rb")
        except FileNotFoundError:
            raise PermanentServiceError(f"{bucket}/{path} not found in {self.label}") from None
        except OSError as exc:
            raise TransientServiceError(f"cannot read {target}: {exc.strerror or exc}") from None
        with handle:
            size = os.fstat(handle.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise _too_large(bucket, path, max_bytes)
            yield Blob(handle, size, None)

    def media_source(self, bucket: str, path: str, *, expires_s: int) -> str:
        # Evolution cannot reach this machine's files: it gets the bytes themselves.
        try:
            return base64.b64encode(self.file(bucket, path).read_bytes()).decode("ascii")
        except FileNotFoundError:
            raise PermanentServiceError(f"{bucket}/{path} not found in {self.label}") from None

    def close(self) -> None:
        pass


class SupabaseStorage:
    """Supabase Storage REST (`{url}/storage/v1`): upsert uploads, streamed downloads, signed URLs."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._base = url.strip().rstrip("/") + "/storage/v1"
        self.label = f"Supabase Storage {public_url(url)}"
        key = key.strip()
        if not key or any(ord(c) < 32 or ord(c) == 127 for c in key):
            # httpx would quote the illegal header value in its error: refuse it without echoing it.
            raise ConfigError("SUPABASE_SERVICE_ROLE_KEY contains spaces or control characters")
        headers = {**storage_headers(key), "user-agent": f"dispara/{dispara.__version__}"}
        self._client = httpx.Client(
            base_url=self._base,
            headers=headers,
            timeout=timeout_s,
            transport=transport,
            follow_redirects=False,
        )

    @staticmethod
    def _object(bucket: str, path: str) -> str:
        check_location(bucket, path)
        return f"{quote(bucket, safe='')}/{quote(path, safe='/')}"

    def _error(self, response: httpx.Response, what: str) -> ServiceError:
        status, code, message = storage_error(response)
        detail = f"{what}: {self.label} answered HTTP {response.status_code}"
        detail += f" ({code or status}: {message})" if code or message else ""
        if code in _AUTH_CODES or status in (401, 403):
            return PermanentServiceError(f"{detail}; check SUPABASE_SERVICE_ROLE_KEY", status=status)
        if status == 429 or status >= 500:
            return TransientServiceError(detail, status=status)
        return PermanentServiceError(detail, status=status)

    def _send(self, request: httpx.Request, what: str, *, stream: bool = False) -> httpx.Response:
        try:
            response = self._client.send(request, stream=stream)
        except httpx.TransportError as exc:
            reason = type(exc).__name__
            raise TransientServiceError(f"{what}: cannot reach {self.label} ({reason})") from None
        if not response.is_success:
            if stream:
                response.read()
                response.close()
            raise self._error(response, what)
        return response

    def upload(self, bucket: str, path: str, source: BinaryIO, *, content_type: str) -> StoredObject:
        obj = self._object(bucket, path)
        headers = {"content-type": content_type, "x-upsert": "true"}
        size = _remaining(source)
        if size is not None:  # a known length, so the body streams without chunked encoding
            headers["content-length"] = str(size)
        request = self._client.build_request(
            "POST", f"/object/{obj}", headers=headers, content=_chunks(source)
        )
        self._send(request, f"upload of {bucket}/{path}")
        return StoredObject(bucket, path, size if size is not None else -1, content_type)

    @contextlib.contextmanager
    def download(self, bucket: str, path: str, *, max_bytes: int | None = None) -> Iterator[Blob]:
        what = f"download of {bucket}/{path}"
        request = self._client.build_request("GET", f"/object/{self._object(bucket, path)}")
        response = self._send(request, what, stream=True)
        spool = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX))  # noqa: SIM115
        try:
            try:
                declared = response.headers.get("content-length", "")
                if max_bytes is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise _too_large(bucket, path, max_bytes)
                size = 0
                try:
                    for chunk in response.iter_bytes(CHUNK):
                        size += len(chunk)
                        if max_bytes is not None and size > max_bytes:
                            raise _too_large(bucket, path, max_bytes)
                        spool.write(chunk)
                except httpx.TransportError as exc:
                    raise TransientServiceError(f"{what}: interrupted ({type(exc).__name__})") from None
            finally:
                response.close()
            spool.seek(0)
            yield Blob(spool, size, response.headers.get("content-type"))
        finally:
            spool.close()

    def signed_url(self, bucket: str, path: str, *, expires_s: int) -> str:
        what = f"signing {bucket}/{path}"
        request = self._client.build_request(
            "POST", f"/object/sign/{self._object(bucket, path)}", json={"expiresIn": int(expires_s)}
        )
        response = self._send(request, what)
        try:
            signed = response.json().get("signedURL") or response.json().get("signedUrl")
        except (ValueError, AttributeError):
            signed = None
        if not isinstance(signed, str) or not signed:
            raise TransientServiceError(f"{what}: {self.label} answered without a signedURL")
        if signed.startswith(("http://", "https://")):
            return signed
        # Relative to /storage/v1 (some versions include that prefix themselves).
        return self._base + "/" + signed.lstrip("/").removeprefix("storage/v1/")

    def media_source(self, bucket: str, path: str, *, expires_s: int) -> str:
        return self.signed_url(bucket, path, expires_s=expires_s)

    def close(self) -> None:
        self._client.close()


def make_storage(data_dir: Path, url: str | None, key: str | None, *, timeout_s: float = 60.0) -> Storage:
    """Supabase Storage when SUPABASE_URL is set (its key is then required), else data_dir/storage."""
    if not url:
        return LocalStorage(data_dir / "storage")
    if not key:
        raise ConfigError("SUPABASE_URL is set but SUPABASE_SERVICE_ROLE_KEY is not")
    return SupabaseStorage(url, key, timeout_s=timeout_s)
