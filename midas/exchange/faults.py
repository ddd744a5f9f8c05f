"""Fault injection: what the local exchange does wrong on purpose, and when.

Every field of `Faults` is off by default and has a `midas exchange` flag of the same name
(`drop_diffs` -> `--drop-diffs`). Stream faults are timed from each connection's opening, so a
client that reconnects meets them again; counts ("every Nth message") are per connection.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

MALFORMED_KINDS = ("invalid_json", "wrong_types", "missing_fields")


@dataclass
class Faults:
    # --- WebSocket ---
    disconnect_every_secs: float = 0.0
    """Every N s (from the exchange's start) drop every open connection without a close frame."""
    drop_diffs: int = 0
    """Leave out N consecutive depth diffs of each symbol (a sequence gap) ..."""
    drop_every_secs: float = 5.0
    """... each time a connection's age passes a multiple of this."""
    duplicate_every: int = 0
    """Send every Nth data message of a connection twice."""
    malformed_every: int = 0
    """Before every Nth data message of a connection, send a malformed frame (cycling through
    invalid JSON, wrong field types, missing fields); the real message still follows."""
    stall_secs: float = 0.0
    """Send nothing for N s (connection kept open, pings still answered); what the market
    published meanwhile is lost ..."""
    stall_after_secs: float = 5.0
    """... starting when the connection is this old (once per connection)."""
    max_connection_age_secs: float = 0.0
    """Close each connection (close frame 1001) when it is this old: Binance's 24 h rule, shortened."""
    # --- REST ---
    rest_fail_status: int = 429
    """HTTP status of injected REST failures: 429 (with Retry-After), 418, 500 or 503."""
    rest_fail_first: int = 0
    """Fail the first N depth requests with rest_fail_status."""
    rest_fail_rate: float = 0.0
    """Fail this fraction of later depth requests (seeded, reproducible)."""
    rest_retry_after_secs: int = 1
    """Retry-After of injected 429/418 answers."""
    rest_slow_secs: float = 0.0
    """Delay slow depth answers by N s ..."""
    rest_slow_first: int = 0
    """... the first N requests ..."""
    rest_slow_rate: float = 0.0
    """... and this fraction of later ones."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float)) and v < 0:
                raise ValueError(f"fault {f.name}={v!r} must not be negative")
        for name in ("rest_fail_rate", "rest_slow_rate"):
            if getattr(self, name) > 1:
                raise ValueError(f"fault {name}={getattr(self, name)!r} must be a fraction from 0 to 1")
        if self.rest_fail_status not in (418, 429, 500, 503):
            raise ValueError(f"fault rest_fail_status={self.rest_fail_status!r}: use 418, 429, 500 or 503")
        if self.drop_diffs and self.drop_every_secs <= 0:
            raise ValueError("fault drop_every_secs must be positive when drop_diffs is set")

    def active(self) -> list[str]:
        """Names of the faults that are switched on (for the start-up banner and logs)."""
        on = []
        for name in ("disconnect_every_secs", "drop_diffs", "duplicate_every", "malformed_every",
                     "stall_secs", "max_connection_age_secs", "rest_fail_first", "rest_fail_rate",
                     "rest_slow_first", "rest_slow_rate"):
            if getattr(self, name):
                on.append(f"{name}={getattr(self, name)}")
        return on


class StreamFaultState:
    """The fault decisions for one connection's outgoing data messages."""

    def __init__(self, faults: Faults, opened: float):
        self.f = faults
        self.opened = opened
        self.count = 0
        self.malformed_count = 0
        self.next_drop_at = faults.drop_every_secs if faults.drop_diffs else None
        self.drop_left: dict[str, int] = {}
        self.drop_all_left = 0

    def stalled(self, now: float) -> bool:
        f = self.f
        if not f.stall_secs:
            return False
        age = now - self.opened
        return f.stall_after_secs <= age < f.stall_after_secs + f.stall_secs

    def drop_depth(self, symbol: str, now: float) -> bool:
        """True if this depth message of `symbol` is to be left out."""
        if self.next_drop_at is None:
            return False
        age = now - self.opened
        if age >= self.next_drop_at:
            while self.next_drop_at <= age:
                self.next_drop_at += self.f.drop_every_secs
            self.drop_left = {}
            self.drop_all_left = self.f.drop_diffs
        if not self.drop_all_left:
            return False
        left = self.drop_left.get(symbol, self.drop_all_left)
        if left > 0:
            self.drop_left[symbol] = left - 1
            return True
        return False

    def next_message(self) -> tuple[bool, str | None]:
        """Count one data message: (send it twice?, kind of malformed frame to send before it)."""
        self.count += 1
        f = self.f
        duplicate = bool(f.duplicate_every) and self.count % f.duplicate_every == 0
        malformed = None
        if f.malformed_every and self.count % f.malformed_every == 0:
            malformed = MALFORMED_KINDS[self.malformed_count % len(MALFORMED_KINDS)]
            self.malformed_count += 1
        return duplicate, malformed


def malformed_frame(kind: str, stream: str | None, symbol: str) -> str:
    """A frame that is not what Binance sends: broken JSON, wrong types or missing fields."""
    if kind == "invalid_json":
        body = '{"e":"depthUpdate","E":17'
        return body if stream is None else '{"stream":"' + stream + '","data":' + body
    if kind == "wrong_types":
        data = ('{"e":"depthUpdate","E":"soon","s":"' + symbol + '","U":"one","u":null,'
                '"b":[[1,2]],"a":"none"}')
    elif kind == "missing_fields":
        data = '{"e":"depthUpdate","b":[],"a":[]}'
    else:
        raise ValueError(f"unknown malformed frame kind {kind!r}")
    return data if stream is None else '{"stream":"' + stream + '","data":' + data + '}'


class RestFaultState:
    """Which depth requests fail or are slowed down (counts over the exchange's life)."""

    def __init__(self, faults: Faults, seed: int):
        self.f = faults
        self.count = 0
        self.rng = random.Random(f"rest-faults:{seed}")

    def next_request(self) -> tuple[int | None, float]:
        """Count one depth request: (injected HTTP status or None, delay in seconds)."""
        self.count += 1
        f = self.f
        fail = None
        if self.count <= f.rest_fail_first or (f.rest_fail_rate and self.rng.random() < f.rest_fail_rate):
            fail = f.rest_fail_status
        delay = 0.0
        if f.rest_slow_secs and (self.count <= f.rest_slow_first
                                 or (f.rest_slow_rate and self.rng.random() < f.rest_slow_rate)):
            delay = f.rest_slow_secs
        return fail, delay
