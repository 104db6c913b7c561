"""The duration of an Ogg/Opus file, from its container alone: the last page's granule position.

Opus always counts granules at 48 kHz; the first `pre_skip` samples of the stream are not played.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Final

MAGIC: Final = b"OggS"
_TAIL: Final = 64 * 1024  # an Ogg page is at most ~65 KB, so the last one starts within this


def opus_duration(data: bytes) -> float | None:
    """Seconds of audio in an Ogg/Opus file held in memory; None if it is not one."""
    pre_skip = _pre_skip(data[:4096])
    if pre_skip is None:
        return None
    granule = _last_granule(data[-_TAIL:])
    if granule is None or granule < pre_skip:
        return None
    return round((granule - pre_skip) / 48_000, 3)


def opus_duration_of(file: BinaryIO, size: int) -> float | None:
    """As opus_duration, reading only the head and the tail of a file."""
    file.seek(0)
    head = file.read(4096)
    file.seek(max(0, size - _TAIL))
    tail = file.read(_TAIL)
    file.seek(0)
    pre_skip = _pre_skip(head)
    granule = _last_granule(tail)
    if pre_skip is None or granule is None or granule < pre_skip:
        return None
    return round((granule - pre_skip) / 48_000, 3)


def _pre_skip(head: bytes) -> int | None:
    if not head.startswith(MAGIC):
        return None
    at = head.find(b"OpusHead")
    if at < 0 or len(head) < at + 12:
        return None
    return int(struct.unpack_from("<H", head, at + 10)[0])


def _last_granule(tail: bytes) -> int | None:
    at = tail.rfind(MAGIC)
    while at >= 0:
        if len(tail) >= at + 14 and tail[at + 4] == 0:  # stream structure version 0
            granule = int(struct.unpack_from("<q", tail, at + 6)[0])
            if granule >= 0:  # -1: no packet ends on this page
                return granule
        at = tail.rfind(MAGIC, 0, at)
    return None
