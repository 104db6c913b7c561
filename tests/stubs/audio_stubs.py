"""Local stand-ins for ElevenLabs, Groq, Supabase Storage and an external worker: Starlette apps served by
uvicorn on 127.0.0.1 in a thread, recording what they receive. Each answers as its contract says.

`with ElevenLabsStub(api_key="K") as s: s.url`; `s.fail_next(429, {...})` queues an error reply.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.stubs.serving import ThreadedServer

HOST = "127.0.0.1"


def make_ogg(seconds: float = 1.0, rate: int = 48_000) -> bytes:
    """A real Ogg/Opus file: a 440 Hz tone, encoded by libsndfile (shipped in the soundfile wheel)."""
    import numpy as np
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    soundfile.write(
        buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate, format="OGG", subtype="OPUS"
    )
    return buf.getvalue()


FAKE_MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 64


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


class _Server:
    """uvicorn in a daemon thread on a free port; `requests()` is what the app recorded."""

    def __init__(self, routes: list[Route]) -> None:
        self.app = Starlette(routes=routes)
        self.lock = threading.Lock()
        self._records: deque[Recorded] = deque(maxlen=100_000)
        self._errors: deque[tuple[int, Any, dict[str, str]]] = deque()
        self._server: ThreadedServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> _Server:
        config = uvicorn.Config(
            self.app, host=HOST, port=0, log_level="warning", lifespan="off", access_log=False
        )
        self._server = ThreadedServer(config, type(self).__name__)
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests(self) -> list[Recorded]:
        with self.lock:
            return list(self._records)

    def record(self, request: Request, body: Any) -> None:
        with self.lock:
            self._records.append(
                Recorded(
                    request.method, request.url.path, dict(request.query_params), dict(request.headers), body
                )
            )

    def fail_next(
        self, status: int, body: Any, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        with self.lock:
            self._errors.extend([(status, body, headers or {})] * times)

    def injected(self) -> Response | None:
        with self.lock:
            if not self._errors:
                return None
            status, body, headers = self._errors.popleft()
        return JSONResponse(body, status_code=status, headers=headers)


class ElevenLabsStub(_Server):
    """`POST /v1/text-to-speech/{voice_id}`: real Ogg/Opus for opus_* formats (unless `opus=False`)."""

    def __init__(self, *, api_key: str, voices: set[str] | None = None, audio: bytes | None = None) -> None:
        super().__init__(
            [
                Route("/v1/text-to-speech/{voice_id}", self.tts, methods=["POST"]),
                Route("/v1/voices/{voice_id}", self.voice, methods=["GET"]),
                Route("/v1/models", self.models, methods=["GET"]),
            ]
        )
        self.api_key = api_key
        self.voices = voices if voices is not None else {"voice-1"}
        self.audio = audio if audio is not None else make_ogg()
        self.opus = True

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("xi-api-key") != self.api_key:
            detail = {"status": "invalid_api_key", "message": "Invalid API key"}
            return JSONResponse({"detail": detail}, status_code=401)
        return None

    async def tts(self, request: Request) -> Response:
        body = await request.json()
        self.record(request, body)
        voice = request.path_params["voice_id"]
        refused = self._auth(request) or self.injected()
        if refused is not None:
            return refused
        if voice not in self.voices:
            detail = {
                "status": "voice_not_found",
                "message": f"A voice with the voice_id {voice} was not found.",
            }
            return JSONResponse({"detail": detail}, status_code=404)
        if not isinstance(body, dict) or not body.get("text"):
            missing = [{"type": "missing", "loc": ["body", "text"], "msg": "Field required"}]
            return JSONResponse({"detail": missing}, status_code=422)
        fmt = request.query_params.get("output_format", "mp3_44100_128")
        headers = {"request-id": uuid.uuid4().hex, "character-cost": str(len(body["text"]))}
        if fmt.startswith("opus_") and self.opus:
            return Response(self.audio, media_type="audio/ogg", headers=headers)
        return Response(FAKE_MP3, media_type="audio/mpeg", headers=headers)

    async def voice(self, request: Request) -> Response:
        self.record(request, None)
        voice = request.path_params["voice_id"]
        refused = self._auth(request)
        if refused is not None:
            return refused
        if voice not in self.voices:
            return JSONResponse(
                {"detail": {"status": "voice_not_found", "message": "not found"}}, status_code=404
            )
        return JSONResponse({"voice_id": voice, "name": "Stub", "category": "premade"})

    async def models(self, request: Request) -> Response:
        self.record(request, None)
        return self._auth(request) or JSONResponse(
            [{"model_id": "eleven_flash_v2_5", "can_do_text_to_speech": True}]
        )


ACCEPTED = {"flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "opus", "wav", "webm"}


class GroqStub(_Server):
    """`POST /openai/v1/audio/transcriptions` (multipart): answers `text`, refuses unaccepted extensions."""

    def __init__(self, *, api_key: str, text: str = "Olá, isto é uma transcrição de teste.") -> None:
        super().__init__(
            [
                Route("/openai/v1/audio/transcriptions", self.transcribe, methods=["POST"]),
                Route("/openai/v1/models", self.models, methods=["GET"]),
            ]
        )
        self.api_key = api_key
        self.text = text

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            error = {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}
            return JSONResponse({"error": error}, status_code=401)
        return None

    async def transcribe(self, request: Request) -> Response:
        form = await request.form()
        upload = form.get("file")
        size = 0
        name = None
        if isinstance(upload, UploadFile):
            name = upload.filename
            while chunk := await upload.read(256 * 1024):  # counted, not kept: big files stay cheap
                size += len(chunk)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        self.record(request, {"filename": name, "size": size, **fields})
        await form.close()
        refused = self._auth(request) or self.injected()
        if refused is not None:
            return refused
        ext = (name or "").rpartition(".")[2].lower()
        if ext not in ACCEPTED:
            error = {
                "message": f"file must be one of the following types: [{' '.join(sorted(ACCEPTED))}]",
                "type": "invalid_request_error",
                "code": "unsupported_audio_format",
            }
            return JSONResponse({"error": error}, status_code=400)
        body: dict[str, Any] = {"text": self.text, "x_groq": {"id": f"req_{uuid.uuid4().hex}"}}
        if fields.get("response_format") == "verbose_json":
            body.update(task="transcribe", language="portuguese", duration=1.0, segments=[])
        return JSONResponse(body)

    async def models(self, request: Request) -> Response:
        self.record(request, None)
        return self._auth(request) or JSONResponse(
            {"object": "list", "data": [{"id": "whisper-large-v3-turbo"}]}
        )


class ExternalWorkerStub(_Server):
    """An external worker: takes the POSTed job, answers a JSON result (or an injected error)."""

    def __init__(self, *, token: str) -> None:
        super().__init__([Route("/run", self.run, methods=["POST"])])
        self.token = token

    @property
    def endpoint(self) -> str:
        return f"{self.url}/run"

    async def run(self, request: Request) -> Response:
        body = await request.json()
        self.record(request, body)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return self.injected() or JSONResponse({"ran": body.get("task_type"), "by": "external-stub"})


class SupabaseStorageStub(_Server):
    """Supabase Storage's object routes in memory, with its error shapes (HTTP 400 + body statusCode)."""

    def __init__(self, *, key: str, buckets: set[str] | None = None) -> None:
        super().__init__(
            [
                Route("/storage/v1/object/sign/{bucket}/{path:path}", self.sign, methods=["POST"]),
                Route("/storage/v1/object/sign/{bucket}/{path:path}", self.signed, methods=["GET"]),
                Route("/storage/v1/object/authenticated/{bucket}/{path:path}", self.get, methods=["GET"]),
                Route("/storage/v1/object/{bucket}/{path:path}", self.put, methods=["POST", "PUT"]),
                Route("/storage/v1/object/{bucket}/{path:path}", self.get, methods=["GET"]),
            ]
        )
        self.key = key
        self.buckets = buckets if buckets is not None else {"dispara-audio"}
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.tokens: dict[str, tuple[str, str]] = {}

    @staticmethod
    def _error(status: int, code: str, message: str) -> Response:
        body = {"statusCode": str(status), "code": code, "error": code, "message": message}
        return JSONResponse(body, status_code=500 if status >= 500 else 400)

    def _refused(self, request: Request, bucket: str) -> Response | None:
        if request.headers.get("apikey") != self.key:
            return self._error(403, "AccessDenied", "Invalid key")
        if bucket not in self.buckets:
            return self._error(404, "NoSuchBucket", "Bucket not found")
        return self.injected()

    async def put(self, request: Request) -> Response:
        bucket, path = request.path_params["bucket"], request.path_params["path"]
        ctype = request.headers.get("content-type", "application/octet-stream")
        if ctype.startswith("multipart/form-data"):  # storage3's way: one file part
            form = await request.form()
            part = form.get("file")
            data = await part.read() if isinstance(part, UploadFile) else b""
            ctype = (
                part.content_type if isinstance(part, UploadFile) else None
            ) or "application/octet-stream"
            await form.close()
        else:
            data = await request.body()
        self.record(request, {"bytes": len(data), "content_type": ctype})
        refused = self._refused(request, bucket)
        if refused is not None:
            return refused
        upsert = request.method == "PUT" or request.headers.get("x-upsert") == "true"
        if (bucket, path) in self.objects and not upsert:
            return self._error(409, "ResourceAlreadyExists", "The resource already exists")
        self.objects[(bucket, path)] = (data, ctype)
        return JSONResponse({"Id": str(uuid.uuid4()), "Key": f"{bucket}/{path}"})

    async def get(self, request: Request) -> Response:
        bucket, path = request.path_params["bucket"], request.path_params["path"]
        self.record(request, None)
        refused = self._refused(request, bucket)
        if refused is not None:
            return refused
        found = self.objects.get((bucket, path))
        if found is None:
            return self._error(404, "NoSuchKey", "Object not found")
        return Response(found[0], media_type=found[1])

    async def sign(self, request: Request) -> Response:
        bucket, path = request.path_params["bucket"], request.path_params["path"]
        body = await request.json()
        self.record(request, body)
        refused = self._refused(request, bucket)
        if refused is not None:
            return refused
        if (bucket, path) not in self.objects:
            return self._error(404, "NoSuchKey", "Object not found")
        token = uuid.uuid4().hex
        self.tokens[token] = (bucket, path)
        return JSONResponse({"signedURL": f"/object/sign/{bucket}/{path}?token={token}"})

    async def signed(self, request: Request) -> Response:
        self.record(request, None)
        where = self.tokens.get(request.query_params.get("token", ""))
        if where is None or where != (request.path_params["bucket"], request.path_params["path"]):
            return self._error(400, "InvalidSignature", "invalid token")
        data, ctype = self.objects[where]
        return Response(data, media_type=ctype)


def main(argv: list[str] | None = None) -> int:
    """Run the ElevenLabs and Groq stubs in their own process (benchmarks): prints their URLs, then waits."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(prog="python -m tests.stubs.audio_stubs")
    parser.add_argument("--elevenlabs-key", required=True)
    parser.add_argument("--groq-key", required=True)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="exit by itself after this long")
    args = parser.parse_args(argv)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    with ElevenLabsStub(api_key=args.elevenlabs_key) as eleven, GroqStub(api_key=args.groq_key) as groq:
        sys.stdout.write(f"ELEVENLABS_STUB_URL={eleven.url}\nGROQ_STUB_URL={groq.url}\n")
        sys.stdout.flush()
        done.wait(args.max_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
