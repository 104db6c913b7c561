"""Verifying QStash's `Upstash-Signature`: an HS256 JWT over the raw body, current key then next key.

PyJWT checks the signature, `iss`, `exp` and `nbf`; the subject (the URL QStash was given) and the body hash
(base64url SHA-256 of the raw bytes, padding ignored) are checked here. Bytes in, so no decoding can break it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import jwt

ISSUER = "Upstash"
_REQUIRED = ["iss", "sub", "exp", "nbf", "body"]


class InvalidSignature(Exception):
    """The delivery did not come from QStash, or not for this URL and body; the reason is safe to log."""


_MISMATCH = InvalidSignature("signature does not match the signing key")


def body_hash(raw: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).decode("ascii").rstrip("=")


def _claims(token: str, key: str, leeway_s: float) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            issuer=ISSUER,
            leeway=leeway_s,
            options={"require": _REQUIRED},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidSignature("signature expired") from None
    except jwt.ImmatureSignatureError:
        raise InvalidSignature("signature not valid yet") from None
    except jwt.InvalidSignatureError:
        raise InvalidSignature(*_MISMATCH.args) from None
    except jwt.PyJWTError as exc:
        raise InvalidSignature(f"malformed signature: {type(exc).__name__}") from None
    return claims


def verify(
    signature: str | None,
    raw_body: bytes,
    *,
    keys: Sequence[str],
    url: str | None,
    leeway_s: float = 0.0,
) -> dict[str, Any]:
    """The token's claims if it is valid for `raw_body` and `url`; raises InvalidSignature otherwise."""
    if not signature:
        raise InvalidSignature("missing Upstash-Signature header")
    usable = [k for k in keys if k]
    if not usable:
        raise InvalidSignature("no signing key configured")
    error = _MISMATCH
    for key in usable:
        try:
            claims = _claims(signature, key, leeway_s)
        except InvalidSignature as exc:
            if exc.args != _MISMATCH.args:  # the key matched: its reason (expired, ...) is the one to tell
                error = exc
            continue
        if url is not None and claims.get("sub") != url:
            raise InvalidSignature("signature is for another URL")
        if not hmac.compare_digest(str(claims.get("body", "")).rstrip("="), body_hash(raw_body)):
            raise InvalidSignature("body does not match its signature")
        return claims
    raise error
