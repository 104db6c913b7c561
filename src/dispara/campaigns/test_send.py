"""A real test send: the first contacts' rendered messages go to the operator's own numbers instead.

The contacts' numbers are never messaged; the campaign is new every time and marked test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from dispara.campaigns.phones import PhoneError, normalize_phone
from dispara.campaigns.prepare import Message
from dispara.campaigns.store import NewCampaign
from dispara.errors import InputError

__all__ = ["TEST_SUFFIX", "as_test_campaign", "to_test_numbers", "to_test_numbers_messages"]

TEST_SUFFIX = " [teste]"


def to_test_numbers(raw: Sequence[str], country: str) -> tuple[str, ...]:
    """`--test-to` values (each may hold several numbers separated by commas), normalised, in order."""
    numbers: list[str] = []
    for value in raw:
        for part in value.split(","):
            if not part.strip():
                continue
            try:
                phone = normalize_phone(part, country)
            except PhoneError as exc:
                raise InputError(f"--test-to {part.strip()!r}: not a usable number ({exc.reason})") from None
            if phone not in numbers:
                numbers.append(phone)
    return tuple(numbers)


def to_test_numbers_messages(messages: Iterator[Message], numbers: Sequence[str]) -> Iterator[Message]:
    """Contact n's messages, addressed to numbers[n]; nothing beyond the last number."""
    for message in messages:
        if message.contact_index >= len(numbers):
            return
        yield message._replace(phone=numbers[message.contact_index])


def as_test_campaign(new: NewCampaign) -> NewCampaign:
    """Sent at once: no start time, window or cap holds back a message to the operator's own phone."""
    document = {**new.document, "schedule": None, "test": True}
    return dataclasses.replace(
        new,
        name=new.name + TEST_SUFFIX,
        status="processing",
        scheduled_for=None,
        daily_cap=None,
        document=document,
    )
