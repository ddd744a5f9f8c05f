"""Reconnect delays: doubling from RECONNECT_DELAY_SECS up to 60 s, jitter bounds, attempts cap."""

from __future__ import annotations

import random

from midas.collector.backoff import Backoff


def test_schedule_doubles_to_the_cap_without_jitter():
    b = Backoff(5.0, jitter=0.0)
    assert [b.next_delay() for _ in range(7)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    assert b.attempts == 7
    b.reset()
    assert b.next_delay() == 5.0


def test_jitter_stays_within_its_share_and_is_seeded():
    b = Backoff(1.0, jitter=0.2, rng=random.Random(3))
    delays = [b.next_delay() for _ in range(8)]
    bases = [1, 2, 4, 8, 16, 32, 60, 60]
    for d, base in zip(delays, bases):
        assert base * 0.8 <= d <= min(60.0, base * 1.2)
    again = Backoff(1.0, jitter=0.2, rng=random.Random(3))
    assert [again.next_delay() for _ in range(8)] == delays
    assert len(set(delays[:6])) == 6


def test_attempt_cap():
    b = Backoff(0.1, max_attempts=3, jitter=0.0)
    assert not b.exhausted()
    b.next_delay(); b.next_delay()
    assert not b.exhausted()
    b.next_delay()
    assert b.exhausted()
    forever = Backoff(0.1, max_attempts=0)
    for _ in range(100):
        forever.next_delay()
    assert not forever.exhausted()
