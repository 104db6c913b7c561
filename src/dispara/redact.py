"""How secrets look when shown to a person: one place for masking keys, URLs, DSNs and free text.

A URL can carry credentials (`user:password@`, `?token=...`, `?apikey=...`): every URL printed in
`config show`, logs, errors and `doctor` goes through `mask_url` or `public_url`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "****"
# Query parameters whose value is a credential (matched on the lower-cased name, without - and _).
_SECRET_PARAMS = re.compile(r"(token|key|secret|pass|pwd|auth|sig|signature|credential|session|code)")
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def mask_secret(value: str) -> str:
    """A secret as `****abcd`: long enough values keep their last four characters to tell them apart."""
    return f"{MASK}{value[-4:]}" if len(value) > 12 else MASK


def mask_url(url: str) -> str:
    """The URL with its password and any credential-looking query values replaced by ****."""
    if "://" not in url:
        return _KV_PASSWORD.sub(rf"\g<1>{MASK}", url)  # a key=value DSN
    try:
        parts = urlsplit(url)
    except ValueError:  # malformed (an unclosed `[::1`): its password still must not show
        return _URL_PASSWORD.sub(rf"\g<1>{MASK}@", url)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [
                (k, MASK if _SECRET_PARAMS.search(k.lower().replace("-", "").replace("_", "")) else v)
                for k, v in pairs
            ],
            safe="*",
        )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def public_url(url: str) -> str:
    """The URL without user:password, query or fragment: for labels and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of the secrets (longest first) replaced by ****."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Free text (a log line, an error) with the secrets, URL credentials and DSN passwords masked."""
    if "://" in text:  # the checks first: a log line seldom has either, and the regexes cost
        text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
    if "password" in text.lower():
        text = _KV_PASSWORD.sub(rf"\g<1>{MASK}", text)
    return scrub(text, secrets)
