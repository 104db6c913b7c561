"""Send WhatsApp messages through an Evolution API v2 server (contracts/evolution.md).

One pooled, thread-safe httpx transport per sender: keep-alive reuse is what allows thousands of sends/s.
"""

from __future__ import annotations

import json
import mimetypes
import posixpath
import urllib.request
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

import dispara
from dispara.errors import ConfigError, PermanentServiceError
from dispara.providers.base import MESSAGE_TYPES, InstanceState, OutgoingMessage, SendResult
from dispara.providers.evolution_errors import (
    classify_response,
    classify_transport_error,
    parse_json,
)

_DEFAULT_NAMES = {"image": "image.jpg", "video": "video.mp4", "document": "document"}
_STATES: dict[str, InstanceState] = {
    "open": "open",
    "close": "close",
    "connecting": "connecting",
    "refused": "close",  # allowed by the server's type, means "not connected" to us
}


def public_url(url: str) -> str:
    """The URL without user:password, query or fragment, safe to print in labels and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


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


class EvolutionSender:
    """A `Sender` for Evolution API v2. Share one instance between threads; call `close()` when done.

    Requests go straight to one pooled `httpx.HTTPTransport` rather than through `httpx.Client`: the
    Client's per-request layer (URL merging, cookie jar, auth and redirect machinery, none of which is
    used here) measured ~40% of the CPU of a send and capped one process at ~1,200 sends/s.
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
        timeout = httpx.Timeout(self.timeout_s, connect=min(connect_timeout_s, self.timeout_s))
        self._extensions = {"timeout": timeout.as_dict()}
        self._headers = {
            "apikey": api_key,
            "accept": "application/json",
            "user-agent": f"dispara/{dispara.__version__}",
        }
        if transport is None:
            # Keep every connection alive: with fewer keep-alive slots than threads, the pool churns sockets.
            limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
            transport = httpx.HTTPTransport(limits=limits, proxy=_proxy_from_env(self._base_url))
        self._transport = transport
        self._urls: dict[str, httpx.URL] = {}

    def __repr__(self) -> str:
        return f"EvolutionSender({self.label!r})"

    def __enter__(self) -> EvolutionSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
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
            data = {"body": data if data is not None else response.text[:500]}
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

    def _request(
        self, method: str, path: str, *, instance: str, number: str | None, body: Any = None
    ) -> httpx.Response:
        headers = self._headers
        content = None
        if body is not None:
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            headers = {**headers, "content-type": "application/json"}
        request = httpx.Request(
            method, self._url(path), headers=headers, content=content, extensions=self._extensions
        )
        try:
            response = self._transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except httpx.TransportError as exc:
            raise classify_transport_error(exc, what=f"{method} {path}", secret=self._api_key) from None
        if response.is_success:
            return response
        raise classify_response(response, instance=instance, number=number, secret=self._api_key)
