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
strings come from `Instrument.price`/`Instrument.qty`.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

from midas.exchange.instruments import Instrument, instrument
from midas.venues import FUTURES

LEVELS_PER_SIDE = 2500
SNAPSHOT_DEPTH = 1000


@dataclass(frozen=True)
class SimTrade:
    trade_id: int
    price: str
    qty: str
    trade_ms: int          # T
    event_ms: int          # E
    is_buyer_maker: bool   # True: a seller hit the best bid


@dataclass(frozen=True)
class SimDepth:
    event_ms: int          # E
    transaction_ms: int    # T (futures payloads only)
    first_update_id: int   # U
    last_update_id: int    # u
    prev_update_id: int    # pu (futures payloads only)
    bids: list[list[str]]  # best first, [price, qty]
    asks: list[list[str]]


@dataclass(frozen=True)
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
        self._build_initial_book()

    # --- the book -----------------------------------------------------------------------------

    def _size(self) -> int:
        return max(1, int(self.rng.lognormvariate(0, 1.1) * self.inst.median_level_lots))

    def _build_initial_book(self) -> None:
        mid = self.inst.start_price_ticks
        for side, sign in ((True, -1), (False, 1)):
            price = mid + sign * (0 if side else 1)
            for i in range(self.target_levels):
                if price <= 0:
                    break
                self._set(side, price, self._size())
                price += sign * self.rng.randint(1, 1 + i // 100)

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

    def _price_at(self, is_bid: bool, index: int) -> int | None:
        """The price of the `index`-th level from the top (0 = best), or None."""
        prices = self.bid_prices if is_bid else self.ask_prices
        if index >= len(prices):
            return None
        return prices[-1 - index] if is_bid else prices[index]

    def levels(self, is_bid: bool, limit: int) -> list[list[str]]:
        """The best `limit` levels of one side as the exchange's [price, qty] strings."""
        prices = self.bid_prices[-limit:][::-1] if is_bid else self.ask_prices[:limit]
        book = self.bids if is_bid else self.asks
        return [[self.inst.price(p), self.inst.qty(book[p])] for p in prices]

    # --- one step -----------------------------------------------------------------------------

    def step(self, event_ms: int) -> StepResult:
        """Advance one interval ending at exchange time `event_ms` and return what is published."""
        rng = self.rng
        prev_ms = self.last_event_ms if self.last_event_ms is not None else event_ms - 100
        if event_ms <= prev_ms:
            raise ValueError(f"{self.symbol}: event time {event_ms} is not after {prev_ms}")
        top_before = self._top()
        changed: dict[tuple[bool, int], int] = {}

        traded: set[tuple[bool, int]] = set()

        def change(is_bid: bool, price: int, lots: int) -> None:
            if (is_bid, price) in traded:
                return  # a traded level keeps exactly its consumed size in this step's diff
            self._set(is_bid, price, lots)
            changed[(is_bid, price)] = lots

        trades = self._trades(prev_ms, event_ms, changed, traded)
        wanted = rng.randint(5, 60)
        attempts = 0
        while len(changed) < wanted and attempts < 400:
            attempts += 1
            self._random_change(change, changed)
        depth = self._depth_event(event_ms, changed, extra_ids=len(trades))
        self.last_event_ms = event_ms
        return StepResult(trades, depth, self._top() != top_before)

    def _trades(self, prev_ms: int, event_ms: int, changed: dict, traded: set) -> list[SimTrade]:
        """Trades of the interval, each taking size from the best level of one side. The levels
        they touch are recorded in `changed` (their new size) and locked in `traded`."""
        rng = self.rng
        count = rng.choices((0, 1, 2, 3, 5), weights=(45, 25, 15, 10, 5))[0]
        times = sorted(rng.randint(prev_ms + 1, event_ms) for _ in range(count))
        trades = []
        for t_ms in times:
            seller_hits_bid = rng.random() < 0.5
            price = self.best_bid() if seller_hits_bid else self.best_ask()
            if price is None:
                continue
            book = self.bids if seller_hits_bid else self.asks
            available = book[price]
            if rng.random() < 0.25:
                lots = available                       # the whole level is taken
            else:
                lots = min(available, max(1, int(rng.expovariate(1.0) * self.inst.median_level_lots / 4)))
            self._set(seller_hits_bid, price, available - lots)
            changed[(seller_hits_bid, price)] = available - lots
            traded.add((seller_hits_bid, price))
            trades.append(SimTrade(
                trade_id=self.next_trade_id, price=self.inst.price(price), qty=self.inst.qty(lots),
                trade_ms=t_ms, event_ms=min(event_ms, t_ms + rng.randint(0, 2)),
                is_buyer_maker=seller_hits_bid))
            self.next_trade_id += 1
        return trades

    def _random_change(self, change, changed) -> None:
        rng = self.rng
        is_bid = rng.random() < 0.5
        book = self.bids if is_bid else self.asks
        prices = self.bid_prices if is_bid else self.ask_prices
        n = len(prices)
        bb, ba = self.best_bid(), self.best_ask()
        r = rng.random()
        if r < 0.38:                                   # size change near the top
            p = self._price_at(is_bid, min(int(rng.expovariate(0.2)), 29))
            if p is not None:
                change(is_bid, p, self._size())
        elif r < 0.50:                                 # removal near the top
            if n > self.target_levels // 2:
                p = self._price_at(is_bid, min(int(rng.expovariate(0.3)), 19))
                if p is not None:
                    change(is_bid, p, 0)
        elif r < 0.66:                                 # new level near the top, inside the spread too
            if bb is None or ba is None:
                return
            if is_bid:
                p = rng.randint(bb - 20, ba - 1)
            else:
                p = rng.randint(bb + 1, ba + 20)
            if p > 0 and (is_bid and p < ba or not is_bid and p > bb):
                change(is_bid, p, self._size())
        elif r < 0.76:                                 # change anywhere in the snapshot's depth
            if n > 20:
                p = self._price_at(is_bid, rng.randrange(20, min(n, SNAPSHOT_DEPTH)))
                change(is_bid, p, 0 if (n > self.target_levels and rng.random() < 0.5) else self._size())
        elif r < 0.86:                                 # beyond the snapshot depth
            if n > SNAPSHOT_DEPTH + 10:
                p = self._price_at(is_bid, rng.randint(SNAPSHOT_DEPTH, n - 1))
                if n > self.target_levels and rng.random() < 0.6:
                    change(is_bid, p, 0)
                else:
                    change(is_bid, p, self._size())
            else:
                self._add_far(is_bid, change)
        elif r < 0.93:                                 # removal of a price that is not in the book
            if n > 2:
                i = rng.randrange(n - 1)
                lo, hi = prices[i], prices[i + 1]
                if hi - lo > 1:
                    p = rng.randint(lo + 1, hi - 1)
                    if (is_bid, p) not in changed:
                        changed[(is_bid, p)] = 0
        else:                                          # a new far level keeps the book deep
            if n < self.target_levels * 1.05:
                self._add_far(is_bid, change)
            elif n:
                change(is_bid, prices[0] if is_bid else prices[-1], 0)

    def _add_far(self, is_bid: bool, change) -> None:
        rng = self.rng
        prices = self.bid_prices if is_bid else self.ask_prices
        if len(prices) < 2:
            return
        i = rng.randrange(30, min(len(prices), SNAPSHOT_DEPTH)) if len(prices) > 31 else len(prices) - 1
        anchor = self._price_at(is_bid, i)
        p = anchor - rng.randint(1, 50) if is_bid else anchor + rng.randint(1, 50)
        if p > 0:
            change(is_bid, p, self._size())

    def _depth_event(self, event_ms: int, changed: dict, extra_ids: int) -> SimDepth:
        rng = self.rng
        prev = self.last_update_id
        if self.futures:
            first = prev + rng.randint(1, 400)
            last = first + rng.randint(len(changed), 4000)
        else:
            first = prev + 1
            last = first + len(changed) + extra_ids + rng.randint(0, 5) - 1
        self.last_update_id = last
        bids = sorted((p for (is_bid, p) in changed if is_bid), reverse=True)
        asks = sorted(p for (is_bid, p) in changed if not is_bid)
        price, qty = self.inst.price, self.inst.qty
        return SimDepth(
            event_ms=event_ms,
            transaction_ms=event_ms - rng.randint(0, 4),
            first_update_id=first, last_update_id=last, prev_update_id=prev,
            bids=[[price(p), qty(changed[(True, p)])] for p in bids],
            asks=[[price(p), qty(changed[(False, p)])] for p in asks],
        )
