"""/dispatch drains one at a time; a wake-up during a drain gets one more round, not a second drain."""

from __future__ import annotations

import threading

import pytest

from dispara.server.drains import DrainGate


def test_a_wake_up_during_a_drain_returns_at_once_and_the_drain_runs_once_more() -> None:
    gate = DrainGate()
    inside, release = threading.Event(), threading.Event()
    rounds: list[int] = []

    def drain() -> int:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            inside.set()
            release.wait(10)
        return len(rounds)

    results: list[int | None] = []
    first = threading.Thread(target=lambda: results.append(gate.run(drain)))
    first.start()
    assert inside.wait(10)
    assert gate.run(drain) is None  # coalesced into the running drain
    assert gate.run(drain) is None  # still one extra round, not two
    release.set()
    first.join(10)
    assert results == [2] and rounds == [0, 1]
    assert gate.run(lambda: 7) == 7  # free again


def test_a_failing_drain_frees_the_gate() -> None:
    gate = DrainGate()

    def boom() -> int:
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        gate.run(boom)
    assert gate.run(lambda: 1) == 1
