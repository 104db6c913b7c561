"""Send WhatsApp messages through an Evolution API v2 server (contracts/evolution.md).

Requests go through the lean HTTP/1.1 client of `http1.py` (one keep-alive socket per thread) unless httpx
is needed: an explicit `transport`, a proxy from the environment, or httpx's transport being hooked (see
`EvolutionSender`). Both paths send the same bytes that matter and raise the same errors.
"""

from __future__ import annotations

import json
import mimetypes
import posixpath
import threading
import urllib.request
from typing import Any, TypeAlias
from urllib.parse import quote, unquote, urlsplit

import httpx

import dispara
from dispara.errors import ConfigError, PermanentServiceError
from dispara.providers.base import InstanceState, OutgoingMessage, SendResult
from dispara.providers.evolution_errors import (
    classify_response,
    classify_transport_error,
    parse_json,
)
from dispara.providers.http1 import Http1Client, Reply
from dispara.redact import public_url
from dispara.states import MESSAGE_TYPES

_Response: TypeAlias = httpx.Response | Reply  # a Reply only for a 2xx without Content-Encoding

_DEFAULT_NAMES = {"image": "image.jpg", "video": "video.mp4", "document": "document"}
_STATES: dict[str, InstanceState] = {
    "open": "open",
    "close": "close",
    "connecting": "connecting",
    "refused": "close",  # allowed by the server's type, means "not connected" to us
}


def media_file_name(msg: OutgoingMessage) -> str:
    """The given file name, else the last segment of the media URL, else a name that fits the type."""
    if msg.file_name and msg.file_name.strip():
        return msg.file_name.strip()
    url = msg.media_url or ""
    if url.startswith(("http://", "https://")):
        name = posixpath.basename(unquote(urlsplit(url).path))
        if name:
            return name
    name = _DEFAULT_NAMES.get(msg.message_type, "file")
    if "." not in name and msg.mimetype:
        name += mimetypes.guess_extension(msg.mimetype.split(";")[0].strip()) or ""
    return name


def _proxy_from_env(url: str) -> str | None:
    # httpx.Client(trust_env=True) would honour HTTP(S)_PROXY / ALL_PROXY / NO_PROXY; keep that behaviour.
    proxies = urllib.request.getproxies_environment()
    if not proxies or urllib.request.proxy_bypass(urlsplit(url).hostname or ""):
        return None
    return proxies.get(urlsplit(url).scheme) or proxies.get("all")


_stock_handle_request: list[object] = []  # httpx's own HTTPTransport.handle_request, once seen


def _httpx_hooked() -> bool:
    """True while something has replaced httpx's transport (pytest-httpx, an instrumentation library)."""
    handle = httpx.HTTPTransport.handle_request
    if _stock_handle_request and handle is _stock_handle_request[0]:
        return False
    stock = getattr(handle, "__qualname__", None) == "HTTPTransport.handle_request"
    if stock and str(getattr(handle, "__module__", "")).startswith("httpx."):
        _stock_handle_request[:] = [handle]
        return False
    return True


def _to_httpx(reply: Reply, request: httpx.Request | None = None) -> httpx.Response:
    """The reply as httpx would have returned it (reason phrase kept, Content-Encoding decoded)."""
    extensions = {"http_version": reply.http_version, "reason_phrase": reply.reason}
    return httpx.Response(
        reply.status, headers=reply.headers, content=reply.content, request=request, extensions=extensions
    )


class EvolutionSender:
    """A `Sender` for Evolution API v2. Share one instance between threads; call `close()` when done.

    By default requests go through `Http1Client`: one keep-alive socket per calling thread, requests written
    from bytes prepared once per route, replies parsed with a few bytes operations: ~90 µs of CPU per send
    (JSON included) against ~400 µs through httpx's transport, which capped one worker at ~1,300 sends/s.
    Its resend rule (only what provably never reached the server complete) is in `http1.py`.

    httpx is used instead, with the same errors and messages, when:
    - `transport` is given (tests with `httpx.MockTransport`, or any custom transport);
    - HTTP(S)_PROXY / ALL_PROXY applies to the URL (and NO_PROXY does not exempt it): httpx does the proxying;
    - httpx's transport is hooked, e.g. by pytest-httpx: a request is then sent the way the hook expects;
    - httpx cannot parse the URL (it then fails as it always did).
    Through httpx, requests go straight to one pooled `httpx.HTTPTransport` rather than `httpx.Client`,
    whose per-request layer (URL merging, cookies, auth, redirects; none used here) cost ~40% of a send.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        typing_delay_ms: int = 1200,
        timeout_extra_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = 64,
        link_preview: bool = True,
        connect_timeout_s: float = 10.0,
    ) -> None:
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"Evolution URL must be http(s)://host[:port], got {public_url(base_url)!r}")
        if not api_key or api_key != api_key.strip() or any(ord(c) < 32 or ord(c) == 127 for c in api_key):
            # httpx would quote an illegal header value in its error; refuse it here without echoing it.
            raise ConfigError("Evolution API key is empty or contains spaces or control characters")
        if typing_delay_ms < 0:
            raise ConfigError("Evolution typing delay must be >= 0 ms")
        self._api_key = api_key
        self._base_url = base_url.strip().rstrip("/")
        self.typing_delay_ms = typing_delay_ms
        self.link_preview = link_preview
        self.label = f"evolution {public_url(self._base_url)}"
        # The server holds the request open for the whole typing delay, then uploads/converts media.
        self.timeout_s = typing_delay_ms / 1000 + timeout_extra_s
        connect_s = min(connect_timeout_s, self.timeout_s)
        timeout = httpx.Timeout(self.timeout_s, connect=connect_s)
        self._extensions = {"timeout": timeout.as_dict()}
        self._headers = {
            "apikey": api_key,
            "accept": "application/json",
            "user-agent": f"dispara/{dispara.__version__}",
        }
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._transport = transport
        self._http1: Http1Client | None = None
        if transport is None:
            proxy = _proxy_from_env(self._base_url)
            if proxy is not None:
                self._transport = self._httpx_transport(proxy)
            else:
                try:
                    origin = httpx.URL(self._base_url)
                except (httpx.InvalidURL, ValueError):
                    origin = None  # httpx's path raises what it always raised for such a URL
                if origin is not None:
                    self._http1 = Http1Client(origin, connect_timeout_s=connect_s, timeout_s=self.timeout_s)
        self._urls: dict[str, httpx.URL] = {}
        self._heads: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"EvolutionSender({self.label!r})"

    def __enter__(self) -> EvolutionSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._http1 is not None:
            self._http1.close()
        if self._transport is not None:
            self._transport.close()

    def build_request(self, msg: OutgoingMessage) -> tuple[str, dict[str, Any]]:
        """The v2 route and JSON body for a message; raises PermanentServiceError for a malformed one."""
        if msg.message_type not in MESSAGE_TYPES:
            raise PermanentServiceError(f"unsupported message type {msg.message_type!r}")
        instance = quote(msg.instance, safe="")
        body: dict[str, Any] = {"number": msg.number}
        if msg.message_type == "text":
            if not msg.text or not msg.text.strip():
                raise PermanentServiceError("text message without text")
            body["text"] = msg.text
            body["delay"] = self.typing_delay_ms
            if not self.link_preview:
                body["linkPreview"] = False  # only an explicit false disables it server-side
            return f"/message/sendText/{instance}", body
        if not msg.media_url or not msg.media_url.strip():
            raise PermanentServiceError(f"{msg.message_type} message without media_url")
        if msg.message_type == "audio":
            body["audio"] = msg.media_url
            body["delay"] = self.typing_delay_ms
            return f"/message/sendWhatsAppAudio/{instance}", body
        body["mediatype"] = msg.message_type
        body["media"] = msg.media_url
        if msg.caption:
            body["caption"] = msg.caption
        body["fileName"] = media_file_name(msg)
        if msg.mimetype:
            body["mimetype"] = msg.mimetype
        body["delay"] = self.typing_delay_ms
        return f"/message/sendMedia/{instance}", body

    def send(self, msg: OutgoingMessage) -> SendResult:
        path, body = self.build_request(msg)
        response = self._request("POST", path, instance=msg.instance, number=msg.number, body=body)
        data = parse_json(response.content)
        if not isinstance(data, dict):
            # A 2xx without a JSON object (a proxy page?): the message probably went out, so don't fail it.
            if data is None:
                data = (_to_httpx(response) if isinstance(response, Reply) else response).text[:500]
            data = {"body": data}
        key = data.get("key")
        key_id = key.get("id") if isinstance(key, dict) else None
        return SendResult(key_id=key_id if isinstance(key_id, str) else "", response=data)

    def instance_state(self, instance: str) -> InstanceState:
        """The in-memory connection state; a reply without `state` (instance not loaded) is "unknown"."""
        path = f"/instance/connectionState/{quote(instance, safe='')}"
        data = parse_json(self._request("GET", path, instance=instance, number=None).content)
        inner = data.get("instance") if isinstance(data, dict) else None
        state = inner.get("state") if isinstance(inner, dict) else None
        return _STATES.get(state, "unknown") if isinstance(state, str) else "unknown"

    def _url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:  # parsing a URL is a measurable share of a send: one per (route, instance)
            if len(self._urls) > 4096:
                self._urls.clear()
            url = self._urls[path] = httpx.URL(self._base_url + path)
        return url

    def _httpx_transport(self, proxy: str | None = None) -> httpx.BaseTransport:
        # Keep every connection alive: with fewer keep-alive slots than threads, the pool churns sockets.
        limits = httpx.Limits(
            max_connections=self._max_connections, max_keepalive_connections=self._max_connections
        )
        return httpx.HTTPTransport(limits=limits, proxy=proxy)

    def _request(
        self, method: str, path: str, *, instance: str, number: str | None, body: Any = None
    ) -> _Response:
        content = None
        if body is not None:
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        http1 = self._http1
        if http1 is not None and not _httpx_hooked():
            return self._request_http1(http1, method, path, content, instance=instance, number=number)
        return self._request_httpx(method, path, content, instance=instance, number=number)

    def _request_http1(
        self,
        http1: Http1Client,
        method: str,
        path: str,
        content: bytes | None,
        *,
        instance: str,
        number: str | None,
    ) -> _Response:
        what = method + " " + path
        key = what if content is None else what + " json"
        prefix = self._heads.get(key)
        if prefix is None:  # the request line and headers are the same for every send on a route
            headers = list(self._headers.items())
            if content is not None:
                headers.append(("content-type", "application/json"))
            if len(self._heads) > 4096:
                self._heads.clear()
            prefix = self._heads[key] = http1.head_prefix(method, self._url(path).raw_path, headers)
        try:
            reply = http1.request(method, prefix, content)
        except httpx.TransportError as exc:
            raise classify_transport_error(exc, what=what, secret=self._api_key, instance=instance) from None
        if 200 <= reply.status < 300 and reply.header(b"content-encoding") is None:
            return reply
        response = _to_httpx(reply, httpx.Request(method, self._url(path)))
        if response.is_success:
            return response
        raise classify_response(response, instance=instance, number=number, secret=self._api_key)

    def _request_httpx(
        self, method: str, path: str, content: bytes | None, *, instance: str, number: str | None
    ) -> httpx.Response:
        transport = self._transport
        if transport is None:  # httpx hooked while the lean client is configured: httpx without a proxy
            with self._lock:
                transport = self._transport = self._transport or self._httpx_transport()
        headers = self._headers
        if content is not None:
            headers = {**headers, "content-type": "application/json"}
        request = httpx.Request(
            method, self._url(path), headers=headers, content=content, extensions=self._extensions
        )
        try:
            response = transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except httpx.TransportError as exc:
            raise classify_transport_error(
                exc, what=f"{method} {path}", secret=self._api_key, instance=instance
            ) from None
        if response.is_success:
            return response
        raise classify_response(response, instance=instance, number=number, secret=self._api_key)
