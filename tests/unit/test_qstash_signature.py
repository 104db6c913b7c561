"""Our verifier of `Upstash-Signature` against the official SDK's `Receiver`, on the same tokens."""

from __future__ import annotations

import time

import pytest
from qstash import Receiver
from qstash.errors import SignatureError

from dispara.server.signature import InvalidSignature, verify
from tests.stubs.qstash_stub import DEV_CURRENT_KEY, DEV_NEXT_KEY, sign

URL = "https://dispara.example.com/qstash/messages"
BODY = '{"message_id":1,"message_content":"Olá, promoção!"}'.encode()
KEYS = [DEV_CURRENT_KEY, DEV_NEXT_KEY]
OTHER = "sig_notthekeynotthekeynotthekey00"


def sdk_accepts(token: str, body: bytes, url: str = URL) -> bool:
    try:
        Receiver(DEV_CURRENT_KEY, DEV_NEXT_KEY).verify(signature=token, body=body.decode(), url=url)
    except SignatureError:
        return False
    return True


def ours_accepts(token: str, body: bytes, url: str = URL) -> bool:
    try:
        verify(token, body, keys=KEYS, url=url)
    except InvalidSignature:
        return False
    return True


def _cases() -> dict[str, tuple[str, bytes, str, bool]]:
    # Built when the test runs, not at collection: the time claims are relative to now.
    now = int(time.time())
    return {
        "valid": (sign(DEV_CURRENT_KEY, URL, BODY), BODY, URL, True),
        "next key": (sign(DEV_NEXT_KEY, URL, BODY), BODY, URL, True),
        "tampered body": (sign(DEV_CURRENT_KEY, URL, BODY), BODY.replace(b"1", b"2"), URL, False),
        "expired": (sign(DEV_CURRENT_KEY, URL, BODY, exp=now - 5), BODY, URL, False),
        "not yet valid": (sign(DEV_CURRENT_KEY, URL, BODY, nbf=now + 60), BODY, URL, False),
        "wrong url": (sign(DEV_CURRENT_KEY, URL, BODY), BODY, URL + "x", False),
        "wrong key": (sign(OTHER, URL, BODY), BODY, URL, False),
        "wrong issuer": (sign(DEV_CURRENT_KEY, URL, BODY, iss="Evil"), BODY, URL, False),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_our_verifier_agrees_with_the_sdk_receiver(case: str) -> None:
    token, body, url, valid = _cases()[case]
    assert sdk_accepts(token, body, url) is valid
    assert ours_accepts(token, body, url) is valid


def test_the_reason_is_the_one_of_the_matching_key() -> None:
    with pytest.raises(InvalidSignature, match="signature expired"):
        verify(sign(DEV_NEXT_KEY, URL, BODY, exp=int(time.time()) - 5), BODY, keys=KEYS, url=URL)
    with pytest.raises(InvalidSignature, match="does not match the signing key"):
        verify(sign(OTHER, URL, BODY), BODY, keys=KEYS, url=URL)
    with pytest.raises(InvalidSignature, match="missing"):
        verify(None, BODY, keys=KEYS, url=URL)


def test_bytes_that_are_not_utf8_verify_too() -> None:
    raw = b"\xff\xfe binary \x00"
    assert ours_accepts(sign(DEV_CURRENT_KEY, URL, raw), raw)
    with pytest.raises(UnicodeDecodeError):  # the SDK needs a str body: these bytes cannot be one
        sdk_accepts(sign(DEV_CURRENT_KEY, URL, raw), raw)


def test_a_body_claim_without_padding_is_accepted() -> None:
    import base64
    import hashlib

    unpadded = base64.urlsafe_b64encode(hashlib.sha256(BODY).digest()).decode().rstrip("=")
    token = sign(DEV_CURRENT_KEY, URL, BODY, body=unpadded)
    assert ours_accepts(token, BODY) and sdk_accepts(token, BODY)
