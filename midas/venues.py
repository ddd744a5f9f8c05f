"""Binance spot and USD-M futures facts, as data (SPEC §1).

Everything venue-specific that is not message parsing lives here: URLs, paths, snapshot limits and
request weights, connection limits. Message parsing lives in `midas.wire`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

SPOT = "binance"
FUTURES = "binance-futures"
VENUE_NAMES = (SPOT, FUTURES)


def _spot_depth_weight(limit: int) -> int:
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def _futures_depth_weight(limit: int) -> int:
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


# Which WebSocket route carries each stream kind. Binance split USD-M futures streams by path
# (announced 2026-03-06, legacy URLs retired 2026-04-23): depth and bookTicker on `/public`, trades
# on `/market`. A futures connection without a routed path still gets `/public` streams but
# silently no trades, so routing is not optional there. Spot has one route for everything.
STREAM_ROUTES = {"depth": "public", "bookTicker": "public", "trade": "market"}


@dataclass(frozen=True)
class VenueSpec:
    name: str
    ws_base: str                     # default WebSocket base (Binance)
    rest_base: str                   # default REST base (Binance)
    depth_path: str                  # REST depth snapshot path
    snapshot_limits: tuple[int, ...] | None   # allowed `limit` values; None = any in 1..max_snapshot_limit
    max_snapshot_limit: int
    depth_weight: Callable[[int], int]
    weight_budget_per_minute: int
    max_client_messages_per_second: int
    server_ping_interval_secs: float
    max_streams_per_connection: int = 1024
    max_connection_age_secs: float = 24 * 3600
    is_futures: bool = False
    route_paths: tuple[tuple[str, str], ...] = ()   # (route, path under the WebSocket base)

    def route_path(self, route: str) -> str:
        """The path a route adds to the WebSocket base ('' where the venue has no routes)."""
        return dict(self.route_paths).get(route, "")

    def valid_snapshot_limit(self, limit: int) -> bool:
        if self.snapshot_limits is not None:
            return limit in self.snapshot_limits
        return 1 <= limit <= self.max_snapshot_limit

    def allowed_limits_text(self) -> str:
        if self.snapshot_limits is not None:
            return "one of " + ", ".join(str(v) for v in self.snapshot_limits)
        return f"an integer from 1 to {self.max_snapshot_limit}"

    def combined_stream_url(self, ws_base: str, streams: list[str]) -> str:
        return f"{ws_base.rstrip('/')}/stream?streams={'/'.join(streams)}"

    def depth_url(self, rest_base: str) -> str:
        return f"{rest_base.rstrip('/')}{self.depth_path}"


VENUES: dict[str, VenueSpec] = {
    SPOT: VenueSpec(
        name=SPOT,
        ws_base="wss://stream.binance.com:9443",
        rest_base="https://api.binance.com",
        depth_path="/api/v3/depth",
        snapshot_limits=None,
        max_snapshot_limit=5000,
        depth_weight=_spot_depth_weight,
        weight_budget_per_minute=6000,
        max_client_messages_per_second=5,
        server_ping_interval_secs=20.0,
    ),
    FUTURES: VenueSpec(
        name=FUTURES,
        ws_base="wss://fstream.binance.com",
        rest_base="https://fapi.binance.com",
        depth_path="/fapi/v1/depth",
        snapshot_limits=(5, 10, 20, 50, 100, 500, 1000),
        max_snapshot_limit=1000,
        depth_weight=_futures_depth_weight,
        weight_budget_per_minute=2400,
        max_client_messages_per_second=10,
        server_ping_interval_secs=180.0,
        is_futures=True,
        route_paths=(("public", "/public"), ("market", "/market")),
    ),
}


def get_venue(name: str) -> VenueSpec:
    try:
        return VENUES[name]
    except KeyError:
        from midas.errors import LayoutError

        raise LayoutError(
            f"unknown venue {name!r}: allowed are {', '.join(VENUE_NAMES)}"
        ) from None


def stream_names(symbol: str, streams: list[str] | tuple[str, ...], depth_speed: str = "100ms") -> list[str]:
    """Binance stream names for one symbol: `btcusdt@depth@100ms`, `btcusdt@trade`, `btcusdt@bookTicker`."""
    low = symbol.lower()
    names = []
    for s in streams:
        if s == "depth":
            names.append(f"{low}@depth@{depth_speed}")
        elif s == "trade":
            names.append(f"{low}@trade")
        elif s == "bookTicker":
            names.append(f"{low}@bookTicker")
        else:
            raise ValueError(f"unknown stream kind {s!r}: allowed are depth, trade, bookTicker")
    return names
