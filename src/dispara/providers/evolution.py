"""Send WhatsApp messages through an Evolution API v2 server (docs/evolution.md).

Every request goes through the pooled transport of one `httpx.Client`; `evolution_errors.py` maps failures.
"""

from __future__ import annotations

import json
import mimetypes
import posixpath
import time
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

import dispara
from dispara.errors import ConfigError, PermanentServiceError
from dispara.providers.base import InstanceState, OutgoingMessage, SendResult
from dispara.providers.evolution_errors import classify_response, classify_transport_error, parse_json
from dispara.redact import public_url
from dispara.states import MESSAGE_TYPES

# Below the 5 s keep-alive timeout of Node's HTTP server (Evolution's): an idle connection is retired before
# the server may close it, so a request is never written into a connection the server is closing.
KEEPALIVE_EXPIRY_S = 4.0
CONNECT_ATTEMPTS = 2  # a connection that could not be opened carried nothing: one more try is safe
RECONNECT_PAUSE_S = 0.25
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


def _checked_url(base_url: str) -> str:
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"Evolution URL must be http(s)://host[:port], got {public_url(base_url)!r}")
    url = base_url.strip().rstrip("/")
    try:
        httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise ConfigError(f"Evolution URL {public_url(base_url)!r} is not a valid URL") from None
    return url


def _checked_key(api_key: str) -> str:
    if not api_key or api_key != api_key.strip() or any(ord(c) < 32 or ord(c) == 127 for c in api_key):
        # httpx would quote an illegal header value in its error; refuse it here without echoing it.
        raise ConfigError("Evolution API key is empty or contains spaces or control characters")
    return api_key


class EvolutionSender:
    """A `Sender` for Evolution API v2. Share one instance between threads; call `close()` when done.

    Requests go through the transport of one `httpx.Client`: a pool of keep-alive connections, with
    HTTP(S)_PROXY, ALL_PROXY, NO_PROXY and SSL_CERT_FILE honoured as httpx honours them. `transport`
    replaces httpx's network transport, e.g. with an `httpx.MockTransport`.

    The resend rule: a request is sent again only when its connection could not be opened (`ConnectError`:
    refused, DNS, TLS), once, after `RECONNECT_PAUSE_S`. The other failures before anything was written
    (connect or pool timeout, a proxy refusing the tunnel: `NEVER_SENT` in `evolution_errors.py`) raise
    `NoAnswerError(maybe_delivered=False)` at once. Anything after the request may have been written (a
    timeout, a dropped connection, a garbled reply) raises `NoAnswerError(maybe_delivered=True)` at once:
    the message may have gone out, and only the queue may decide to send it again.
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
        keepalive_expiry_s: float = KEEPALIVE_EXPIRY_S,
    ) -> None:
        self._base_url = _checked_url(base_url)
        self._api_key = _checked_key(api_key)
        if typing_delay_ms < 0:
            raise ConfigError("Evolution typing delay must be >= 0 ms")
        self.typing_delay_ms = typing_delay_ms
        self.link_preview = link_preview
        self.label = f"evolution {public_url(self._base_url)}"
        # The server holds the request open for the whole typing delay, then uploads/converts media.
        self.timeout_s = typing_delay_ms / 1000 + timeout_extra_s
        timeout = httpx.Timeout(self.timeout_s, connect=min(connect_timeout_s, self.timeout_s))
        self._extensions = {"timeout": timeout.as_dict()}
        common = {
            "apikey": api_key,
            "accept": "application/json",
            "user-agent": f"dispara/{dispara.__version__}",
        }
        self._headers = httpx.Headers(common)
        self._json_headers = httpx.Headers({**common, "content-type": "application/json"})
        # Keep every connection alive: with fewer keep-alive slots than threads, the pool churns sockets.
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry_s,
        )
        self._client = httpx.Client(limits=limits, transport=transport, trust_env=True)
        # Every request goes to one origin, so the transport httpx would pick for it (the proxy's, when the
        # environment names one that applies) is picked once. Calling it directly skips the client's
        # per-request layer (URL merging, cookies, auth and redirect hooks; none used here), which cost a
        # third of the CPU of a send (BENCHMARKS.md); `close()` still closes it through the client.
        self._transport = self._client._transport_for_url(httpx.URL(self._base_url))
        self._urls: dict[str, httpx.URL] = {}

    def __repr__(self) -> str:
        return f"EvolutionSender({self.label!r})"

    def __enter__(self) -> EvolutionSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

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
            data = {"body": response.text[:500] if data is None else data}
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

    # ---- what `dispara evolution webhook setup` needs ----------------------------------------------------
    def find_webhook(self, instance: str) -> dict[str, Any] | None:
        """The instance's webhook as Evolution stores it (`GET /webhook/find`), or None when it has none."""
        path = f"/webhook/find/{quote(instance, safe='')}"
        data = parse_json(self._request("GET", path, instance=instance, number=None).content)
        return data if isinstance(data, dict) and data else None

    def set_webhook(self, instance: str, webhook: dict[str, Any]) -> None:
        """Replace the instance's webhook (`POST /webhook/set`, the body nested under `webhook`)."""
        path = f"/webhook/set/{quote(instance, safe='')}"
        self._request("POST", path, instance=instance, number=None, body={"webhook": webhook})

    def instance_names(self) -> list[str]:
        """Every instance on the server (`GET /instance/fetchInstances`: name or instance.instanceName)."""
        data = parse_json(self._request("GET", "/instance/fetchInstances", instance="", number=None).content)
        names = []
        for item in data if isinstance(data, list) else []:
            inner = item.get("instance") if isinstance(item, dict) else None
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) and isinstance(inner, dict):
                name = inner.get("instanceName")
            if isinstance(name, str) and name:
                names.append(name)
        return names

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
        content = None
        if body is not None:
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        request = httpx.Request(
            method,
            self._url(path),
            headers=self._headers if content is None else self._json_headers,
            content=content,
            extensions=self._extensions,
        )
        response = self._send(request, what=f"{method} {path}", instance=instance)
        if response.is_success:
            return response
        raise classify_response(response, instance=instance, number=number, secret=self._api_key)

    def _send(self, request: httpx.Request, *, what: str, instance: str) -> httpx.Response:
        """The reply, sending again only what never left (see the resend rule in the class docstring)."""
        attempts_left = CONNECT_ATTEMPTS
        while True:
            try:
                return self._exchange(request)
            except httpx.ConnectError as exc:
                attempts_left -= 1
                if attempts_left == 0:
                    raise classify_transport_error(
                        exc, what=what, secret=self._api_key, instance=instance
                    ) from None
            except httpx.TransportError as exc:
                raise classify_transport_error(
                    exc, what=what, secret=self._api_key, instance=instance
                ) from None
            time.sleep(RECONNECT_PAUSE_S)

    def _exchange(self, request: httpx.Request) -> httpx.Response:
        response = self._transport.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        return response
