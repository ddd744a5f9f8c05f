"""The simulated market: one deterministic order book per symbol, stepped every 100 ms.

`SymbolMarket.step(event_ms)` advances the book by one interval and returns what the exchange
publishes for it: the trades of the interval (each hitting the best level of one side) and one
diff depth event carrying every level whose quantity changed, with the quantity it now has (0 =
removed). The book, the update ids and the trades depend only on the seed and the symbol, never
on the clock, so two runs with the same seed publish the same market; only `E`/`T` differ.

What a step contains (the issue's list):
- 5 to 60 changed levels: quantity changes and removals near the top, new levels (inside the
  spread too), changes far from the top, changes beyond the snapshot depth (level 1000+), and
  removals of prices that are not in the book (normal on Binance).
- trades that consume the best level; the diff of the same step shows the consumed size.
- update ids: spot ids are contiguous (`U` = previous `u` + 1); futures ids jump irregularly and
  `pu` is the previous event's `u`, so a client using the spot rule on futures sees false gaps.

Pure: no I/O, no clock. Prices are integers in ticks and quantities integers in lots; the payload
strings come from `Instrument.price`/`Instrument.qty` (cached per symbol).
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from math import log as _log

from midas.exchange.instruments import Instrument, instrument
from midas.venues import FUTURES

LEVELS_PER_SIDE = 2500
SNAPSHOT_DEPTH = 1000
SIZE_POOL = 1024            # resting sizes are drawn from a seeded pool of lognormal sizes
STRING_CACHE_MAX = 200_000  # formatted price/qty strings kept per symbol


@dataclass(slots=True)
class SimTrade:
    trade_id: int
    price: str
    qty: str
    trade_ms: int          # T
    event_ms: int          # E
    is_buyer_maker: bool   # True: a seller hit the best bid


@dataclass(slots=True)
class SimDepth:
    event_ms: int          # E
    transaction_ms: int    # T (futures payloads only)
    first_update_id: int   # U
    last_update_id: int    # u
    prev_update_id: int    # pu (futures payloads only)
    bids: list[list[str]]  # best first, [price, qty]
    asks: list[list[str]]


@dataclass(slots=True)
class StepResult:
    trades: list[SimTrade]
    depth: SimDepth
    top_changed: bool      # the best bid or ask (price or size) changed in this step


class SymbolMarket:
    """The order book of one symbol and its random dynamics."""

    def __init__(self, symbol: str, venue: str, seed: int, levels_per_side: int = LEVELS_PER_SIDE):
        self.inst: Instrument = instrument(symbol, venue)
        self.symbol = self.inst.symbol
        self.venue = venue
        self.futures = venue == FUTURES
        self.rng = random.Random(f"{seed}:{venue}:{self.symbol}")
        self.target_levels = levels_per_side
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.bid_prices: list[int] = []   # ascending; best bid last
        self.ask_prices: list[int] = []   # ascending; best ask first
        self.last_update_id = self.rng.randint(10**9, 5 * 10**9) * (1000 if self.futures else 10)
        self.next_trade_id = self.rng.randint(10**9, 4 * 10**9)
        self.last_event_ms: int | None = None
        self._rand = self.rng.random
        median = self.inst.median_level_lots
        self._sizes = [max(1, int(self.rng.lognormvariate(0, 1.1) * median)) for _ in range(SIZE_POOL)]
        self._price_cache: dict[int, str] = {}
        self._qty_cache: dict[int, str] = {}
        self._build_initial_book()

    # --- the book -----------------------------------------------------------------------------

    def _int(self, low: int, high: int) -> int:
        """A uniform integer in [low, high] (faster than Random.randint on this hot path)."""
        return low + int(self._rand() * (high - low + 1))

    def _size(self) -> int:
        return self._sizes[int(self._rand() * SIZE_POOL)]

    def _build_initial_book(self) -> None:
        mid = self.inst.start_price_ticks
        for side, sign in ((True, -1), (False, 1)):
            price = mid + sign * (0 if side else 1)
            for i in range(self.target_levels):
                if price <= 0:
                    break
                self._set(side, price, self._size())
                price += sign * self._int(1, 1 + i // 100)

    def _set(self, is_bid: bool, price: int, lots: int) -> None:
        book, prices = (self.bids, self.bid_prices) if is_bid else (self.asks, self.ask_prices)
        if lots > 0:
            if price not in book:
                bisect.insort(prices, price)
            book[price] = lots
        elif price in book:
            del book[price]
            del prices[bisect.bisect_left(prices, price)]

    def best_bid(self) -> int | None:
        return self.bid_prices[-1] if self.bid_prices else None

    def best_ask(self) -> int | None:
        return self.ask_prices[0] if self.ask_prices else None

    def _top(self) -> tuple:
        bb, ba = self.best_bid(), self.best_ask()
        return (bb, self.bids.get(bb), ba, self.asks.get(ba))

    def price_str(self, ticks: int) -> str:
        text = self._price_cache.get(ticks)
        if text is None:
            if len(self._price_cache) > STRING_CACHE_MAX:
                self._price_cache.clear()
            text = self._price_cache[ticks] = self.inst.price(ticks)
        return text

    def qty_str(self, lots: int) -> str:
        text = self._qty_cache.get(lots)
        if text is None:
            if len(self._qty_cache) > STRING_CACHE_MAX:
                self._qty_cache.clear()
            text = self._qty_cache[lots] = self.inst.qty(lots)
        return text

    def levels(self, is_bid: bool, limit: int) -> list[list[str]]:
        """The best `limit` levels of one side as the exchange's [price, qty] strings."""
        prices = self.bid_prices[-limit:][::-1] if is_bid else self.ask_prices[:limit]
        book = self.bids if is_bid else self.asks
        px, qty = self.price_str, self.qty_str
        return [[px(p), qty(book[p])] for p in prices]

    # --- one step -----------------------------------------------------------------------------

    def step(self, event_ms: int) -> StepResult:
        """Advance one interval ending at exchange time `event_ms` and return what is published."""
        prev_ms = self.last_event_ms if self.last_event_ms is not None else event_ms - 100
        if event_ms <= prev_ms:
            raise ValueError(f"{self.symbol}: event time {event_ms} is not after {prev_ms}")
        top_before = self._top()
        changed: dict[tuple[bool, int], int] = {}
        traded: set[tuple[bool, int]] = set()
        trades = self._trades(prev_ms, event_ms, changed, traded)
        # 5..60 levels; small diffs are the most frequent, as on Binance
        wanted = 5 + int(56 * self._rand() ** 3)
        self._random_changes(wanted, changed, traded)
        depth = self._depth_event(event_ms, changed, extra_ids=len(trades))
        self.last_event_ms = event_ms
        return StepResult(trades, depth, self._top() != top_before)

    def _trades(self, prev_ms: int, event_ms: int, changed: dict, traded: set) -> list[SimTrade]:
        """Trades of the interval, each taking size from the best level of one side. The levels
        they touch are recorded in `changed` (their new size) and locked in `traded`."""
        rand = self._rand
        r = rand()
        count = 0 if r < 0.45 else 1 if r < 0.70 else 2 if r < 0.85 else 3 if r < 0.95 else 5
        times = sorted(self._int(prev_ms + 1, event_ms) for _ in range(count))
        trades = []
        for t_ms in times:
            seller_hits_bid = rand() < 0.5
            price = self.best_bid() if seller_hits_bid else self.best_ask()
            if price is None:
                continue
            book = self.bids if seller_hits_bid else self.asks
            available = book[price]
            if rand() < 0.25:
                lots = available                       # the whole level is taken
            else:
                lots = min(available, max(1, int(self.rng.expovariate(1.0) * self.inst.median_level_lots / 4)))
            self._set(seller_hits_bid, price, available - lots)
            changed[(seller_hits_bid, price)] = available - lots
            traded.add((seller_hits_bid, price))
            trades.append(SimTrade(
                trade_id=self.next_trade_id, price=self.price_str(price), qty=self.qty_str(lots),
                trade_ms=t_ms, event_ms=min(event_ms, t_ms + self._int(0, 2)),
                is_buyer_maker=seller_hits_bid))
            self.next_trade_id += 1
        return trades

    def _random_changes(self, wanted: int, changed: dict, traded: set) -> None:
        """Change levels until `wanted` levels changed in this step (the hot path: all locals)."""
        rand, sizes, target = self._rand, self._sizes, self.target_levels
        bids, asks, bid_prices, ask_prices = self.bids, self.asks, self.bid_prices, self.ask_prices
        insort, bisect_left = bisect.insort, bisect.bisect_left

        def change(is_bid: bool, price: int, lots: int) -> None:
            if (is_bid, price) in traded:
                return  # a traded level keeps exactly its consumed size in this step's diff
            book, prices = (bids, bid_prices) if is_bid else (asks, ask_prices)
            if lots > 0:
                if price not in book:
                    insort(prices, price)
                book[price] = lots
            elif price in book:
                del book[price]
                del prices[bisect_left(prices, price)]
            changed[(is_bid, price)] = lots

        attempts = 0
        while len(changed) < wanted and attempts < 400:
            attempts += 1
            is_bid = rand() < 0.5
            prices = bid_prices if is_bid else ask_prices
            n = len(prices)
            r = rand()
            if r < 0.38:                                   # size change near the top
                i = min(int(-5.0 * _log(1.0 - rand())), 29)
                if i < n:
                    change(is_bid, prices[-1 - i] if is_bid else prices[i], sizes[int(rand() * SIZE_POOL)])
            elif r < 0.50:                                 # removal near the top
                if n > target // 2:
                    i = min(int(-3.33 * _log(1.0 - rand())), 19)
                    change(is_bid, prices[-1 - i] if is_bid else prices[i], 0)
            elif r < 0.66:                                 # new level near the top, inside the spread too
                if not bid_prices or not ask_prices:
                    continue
                bb, ba = bid_prices[-1], ask_prices[0]
                if is_bid:
                    p = bb - 20 + int(rand() * (ba - bb + 20))
                else:
                    p = bb + 1 + int(rand() * (ba - bb + 20))
                if p > 0 and (p < ba if is_bid else p > bb):
                    change(is_bid, p, sizes[int(rand() * SIZE_POOL)])
            elif r < 0.76:                                 # change anywhere in the snapshot's depth
                if n > 20:
                    i = 20 + int(rand() * (min(n, SNAPSHOT_DEPTH) - 20))
                    change(is_bid, prices[-1 - i] if is_bid else prices[i], sizes[int(rand() * SIZE_POOL)])
            elif r < 0.86:                                 # beyond the snapshot depth
                if n > SNAPSHOT_DEPTH + 10:
                    i = SNAPSHOT_DEPTH + int(rand() * (n - SNAPSHOT_DEPTH))
                    p = prices[-1 - i] if is_bid else prices[i]
                    change(is_bid, p, 0 if (n > target and rand() < 0.6) else sizes[int(rand() * SIZE_POOL)])
                else:
                    self._add_far(is_bid, change)
            elif r < 0.93:                                 # removal of a price that is not in the book
                if n > 2:
                    i = int(rand() * (n - 1))
                    lo, hi = prices[i], prices[i + 1]
                    if hi - lo > 1:
                        p = lo + 1 + int(rand() * (hi - lo - 1))
                        if (is_bid, p) not in changed:
                            changed[(is_bid, p)] = 0
            else:                                          # a new far level keeps the book deep
                if n < target * 1.05:
                    self._add_far(is_bid, change)
                elif n:
                    change(is_bid, prices[0] if is_bid else prices[-1], 0)

    def _add_far(self, is_bid: bool, change) -> None:
        prices = self.bid_prices if is_bid else self.ask_prices
        n = len(prices)
        if n < 2:
            return
        i = self._int(30, min(n, SNAPSHOT_DEPTH) - 1) if n > 31 else n - 1
        anchor = prices[-1 - i] if is_bid else prices[i]
        p = anchor - self._int(1, 50) if is_bid else anchor + self._int(1, 50)
        if p > 0:
            change(is_bid, p, self._size())

    def _depth_event(self, event_ms: int, changed: dict, extra_ids: int) -> SimDepth:
        prev = self.last_update_id
        if self.futures:
            first = prev + self._int(1, 400)
            last = first + self._int(len(changed), 4000)
        else:
            first = prev + 1
            last = first + len(changed) + extra_ids + self._int(0, 5) - 1
        self.last_update_id = last
        bids = sorted((p for (is_bid, p) in changed if is_bid), reverse=True)
        asks = sorted(p for (is_bid, p) in changed if not is_bid)
        price, qty = self.price_str, self.qty_str
        return SimDepth(
            event_ms=event_ms,
            transaction_ms=event_ms - self._int(0, 4),
            first_update_id=first, last_update_id=last, prev_update_id=prev,
            bids=[[price(p), qty(changed[(True, p)])] for p in bids],
            asks=[[price(p), qty(changed[(False, p)])] for p in asks],
        )
