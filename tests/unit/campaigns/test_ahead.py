"""read_ahead: chunks in order, the reader's error raised to the consumer, and a consumer that stops early."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dispara.campaigns.ahead import read_ahead


def test_items_come_in_chunks_in_order() -> None:
    with read_ahead(range(10), 4) as chunks:
        assert list(chunks) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with read_ahead(range(0), 4) as chunks:
        assert list(chunks) == []


def test_an_error_while_reading_is_raised_to_the_consumer_after_the_chunks_before_it() -> None:
    def items() -> Iterator[int]:
        yield from range(5)
        raise ValueError("line 6: bad row")

    got: list[list[int]] = []
    with pytest.raises(ValueError, match="line 6"), read_ahead(items(), 2) as chunks:
        got.extend(chunks)
    assert got == [[0, 1], [2, 3]]


def test_a_consumer_that_stops_early_stops_the_reader() -> None:
    before = threading.active_count()
    with pytest.raises(RuntimeError), read_ahead(iter(range(10**9)), 10, depth=1) as chunks:
        next(chunks)
        raise RuntimeError("the database went away")
    assert threading.active_count() == before
