"""The Storage seam: Supabase Storage REST against pytest-httpx and a local fake read back with storage3,
and the local directory that is the embedded default."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pytest_httpx import HTTPXMock

from dispara.errors import ConfigError, PermanentServiceError, TransientServiceError
from dispara.providers.storage import LocalStorage, StoragePathError, SupabaseStorage, make_storage
from tests.stubs.audio_stubs import SupabaseStorageStub

URL = "https://proj.supabase.test"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
SECRET = "sb_secret_0123456789abcdef"
OBJECT = f"{URL}/storage/v1/object/dispara-audio/tts/a%20b.ogg"


def supabase(key: str = JWT) -> SupabaseStorage:
    return SupabaseStorage(URL, key)


def storage_error(status: str, code: str, message: str, http: int = 400) -> dict[str, object]:
    return {
        "status_code": http,
        "json": {"statusCode": status, "code": code, "error": code, "message": message},
    }


def test_upload_streams_raw_bytes_with_upsert(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=OBJECT, method="POST", json={"Id": "1", "Key": "dispara-audio/tts/a b.ogg"})
    stored = supabase().upload(
        "dispara-audio", "tts/a b.ogg", io.BytesIO(b"OggS" * 100), content_type="audio/ogg"
    )
    assert (stored.bucket, stored.path, stored.bytes) == ("dispara-audio", "tts/a b.ogg", 400)
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["apikey"] == JWT and request.headers["authorization"] == f"Bearer {JWT}"
    assert request.headers["x-upsert"] == "true" and request.headers["content-type"] == "audio/ogg"
    assert request.headers["content-length"] == "400" and "transfer-encoding" not in request.headers
    assert request.read() == b"OggS" * 100


def test_a_secret_key_goes_in_apikey_only(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=OBJECT, method="POST", json={})
    supabase(SECRET).upload("dispara-audio", "tts/a b.ogg", io.BytesIO(b"x"), content_type="audio/ogg")
    request = httpx_mock.get_request()
    assert (
        request is not None and request.headers["apikey"] == SECRET and "authorization" not in request.headers
    )


@pytest.mark.parametrize(
    ("reply", "kind", "message"),
    [
        (
            storage_error("404", "NoSuchKey", "Object not found"),
            PermanentServiceError,
            r"HTTP 400 \(NoSuchKey: Object not found\)",
        ),
        (storage_error("404", "NoSuchBucket", "Bucket not found"), PermanentServiceError, "NoSuchBucket"),
        (
            storage_error("409", "ResourceAlreadyExists", "The resource already exists"),
            PermanentServiceError,
            "already exists",
        ),
        (storage_error("413", "EntityTooLarge", "too big"), PermanentServiceError, "EntityTooLarge"),
        (
            storage_error("403", "AccessDenied", "no"),
            PermanentServiceError,
            "check SUPABASE_SERVICE_ROLE_KEY",
        ),
        (
            {"status_code": 401, "json": {"message": "Invalid API key"}},
            PermanentServiceError,
            "check SUPABASE",
        ),
        (storage_error("500", "InternalError", "db down", http=500), TransientServiceError, "db down"),
        (storage_error("429", "too_many_connections", "busy", http=429), TransientServiceError, "busy"),
    ],
)
def test_error_shapes_are_classified_by_the_body_status(
    httpx_mock: HTTPXMock, reply: dict[str, object], kind: type[Exception], message: str
) -> None:
    httpx_mock.add_response(url=OBJECT, method="POST", **reply)  # type: ignore[arg-type]
    with pytest.raises(kind, match=message) as caught:
        supabase().upload("dispara-audio", "tts/a b.ogg", io.BytesIO(b"x"), content_type="audio/ogg")
    assert JWT not in str(caught.value)


def test_signed_url_is_relative_to_storage_v1(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=f"{URL}/storage/v1/object/sign/dispara-audio/a.ogg",
        method="POST",
        match_json={"expiresIn": 600},
        json={"signedURL": "/object/sign/dispara-audio/a.ogg?token=t0k"},
    )
    url = supabase().media_source("dispara-audio", "a.ogg", expires_s=600)
    assert url == f"{URL}/storage/v1/object/sign/dispara-audio/a.ogg?token=t0k"


def test_download_refuses_an_object_over_the_limit_by_its_length(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{URL}/storage/v1/object/b/big.ogg", content=b"x" * 2000)
    with (
        pytest.raises(PermanentServiceError, match=r"larger than 0\.001 MB: refused before any upload"),
        supabase().download("b", "big.ogg", max_bytes=1000),
    ):
        pass


@pytest.mark.parametrize(
    ("bucket", "path"),
    [
        ("b", "../etc/passwd"),
        ("b", "/abs.ogg"),
        ("b", "a//b"),
        ("b", "a\\b"),
        ("b", "a\x00b"),
        ("../b", "a"),
        ("", "a"),
    ],
)
def test_hostile_locations_are_refused(bucket: str, path: str, tmp_path: Path) -> None:
    with pytest.raises(StoragePathError):
        LocalStorage(tmp_path).upload(bucket, path, io.BytesIO(b"x"), content_type="audio/ogg")
    assert list(tmp_path.iterdir()) == []


def test_local_storage_round_trip(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    stored = storage.upload("dispara-audio", "x/y.ogg", io.BytesIO(b"OggS data"), content_type="audio/ogg")
    assert stored.bytes == 9 and (tmp_path / "storage/dispara-audio/x/y.ogg").read_bytes() == b"OggS data"
    with storage.download("dispara-audio", "x/y.ogg") as blob:
        assert (blob.size, blob.file.read()) == (9, b"OggS data")
    assert base64.b64decode(storage.media_source("dispara-audio", "x/y.ogg", expires_s=60)) == b"OggS data"
    with (
        pytest.raises(PermanentServiceError, match="not found"),
        storage.download("dispara-audio", "x/none.ogg"),
    ):
        pass
    with (
        pytest.raises(PermanentServiceError, match="larger than"),
        storage.download("dispara-audio", "x/y.ogg", max_bytes=4),
    ):
        pass
    assert [p.name for p in (tmp_path / "storage/dispara-audio/x").iterdir()] == ["y.ogg"]  # no temp left


def test_make_storage_defaults_to_the_data_dir(tmp_path: Path) -> None:
    assert isinstance(make_storage(tmp_path, None, None), LocalStorage)
    assert isinstance(make_storage(tmp_path, URL, JWT), SupabaseStorage)
    with pytest.raises(ConfigError, match="SUPABASE_SERVICE_ROLE_KEY is not"):
        make_storage(tmp_path, URL, None)


@pytest.fixture
def fake() -> Iterator[SupabaseStorageStub]:
    with SupabaseStorageStub(key=JWT) as stub:
        yield stub


def test_storage3_reads_what_we_wrote_and_we_read_what_it_wrote(fake: SupabaseStorageStub) -> None:
    from storage3 import SyncStorageClient

    ours = SupabaseStorage(fake.url, JWT)
    theirs = SyncStorageClient(f"{fake.url}/storage/v1/", {"apikey": JWT, "Authorization": f"Bearer {JWT}"})
    audio = b"OggS" + bytes(range(256)) * 4000  # ~1 MB, spooled to a temporary file on download
    ours.upload("dispara-audio", "tts/one.ogg", io.BytesIO(audio), content_type="audio/ogg")
    assert theirs.from_("dispara-audio").download("tts/one.ogg") == audio
    ours.upload("dispara-audio", "tts/one.ogg", io.BytesIO(b"OggS v2"), content_type="audio/ogg")  # upsert
    assert theirs.from_("dispara-audio").download("tts/one.ogg") == b"OggS v2"
    theirs.from_("dispara-audio").upload("in/two.ogg", audio, {"content-type": "audio/ogg"})
    with ours.download("dispara-audio", "in/two.ogg") as blob:
        assert blob.size == len(audio) and blob.file.read() == audio
    signed = ours.signed_url("dispara-audio", "in/two.ogg", expires_s=60)
    assert (
        str(theirs.from_("dispara-audio").create_signed_url("in/two.ogg", 60)["signedURL"]).split("?")[0]
        == signed.split("?")[0]
    )
    assert httpx.get(signed).content == audio  # the signed URL works without any key
    with (
        pytest.raises(PermanentServiceError, match="NoSuchKey"),
        ours.download("dispara-audio", "in/none.ogg"),
    ):
        pass
