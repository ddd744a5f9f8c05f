"""Reconnect and retry delays: the first delay doubles with jitter up to a cap, reset after health.

`RECONNECT_DELAY_SECS` is the first delay; each failed attempt doubles it up to 60 s; every delay
gets up to +/-`jitter` of itself at random so that many collectors restarting together spread out;
a connection that stayed healthy for `healthy_after_secs` resets the schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MAX_DELAY_SECS = 60.0


@dataclass
class Backoff:
    first_delay: float
    max_delay: float = MAX_DELAY_SECS
    jitter: float = 0.2
    max_attempts: int = 0               # 0 = retry forever
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def base_delay(self, attempt: int) -> float:
        """The delay before retry number `attempt` (1-based) without jitter."""
        return min(self.max_delay, self.first_delay * (2 ** (attempt - 1)))

    def exhausted(self) -> bool:
        return self.max_attempts > 0 and self.attempts >= self.max_attempts

    def next_delay(self) -> float:
        """Count one more failed attempt and return how long to wait before the next one."""
        self.attempts += 1
        base = self.base_delay(self.attempts)
        spread = base * self.jitter
        return max(0.0, min(self.max_delay, base + self.rng.uniform(-spread, spread)))

    def reset(self) -> None:
        self.attempts = 0
