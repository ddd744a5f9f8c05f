"""The pure market simulation: determinism, book shape, diffs and trades consistent with the book."""

from __future__ import annotations

from decimal import Decimal

from midas.exchange.depth_merge import DepthMerger
from midas.exchange.instruments import instrument
from midas.exchange.market import SNAPSHOT_DEPTH, SymbolMarket

START_MS = 1_721_347_022_500


def _run(market: SymbolMarket, steps: int):
    return [market.step(START_MS + 100 * (i + 1)) for i in range(steps)]


def test_same_seed_same_market_other_seed_other_market():
    a = _run(SymbolMarket("BTCUSDT", "binance-futures", 5), 50)
    b = _run(SymbolMarket("BTCUSDT", "binance-futures", 5), 50)
    c = _run(SymbolMarket("BTCUSDT", "binance-futures", 6), 50)
    assert a == b
    assert [r.depth for r in a] != [r.depth for r in c]


def test_instrument_formats_are_the_venues():
    spot, fut = instrument("BTCUSDT", "binance"), instrument("BTCUSDT", "binance-futures")
    assert spot.price(6_173_763) == "61737.63000000" and spot.qty(2500) == "0.02500000"
    assert fut.price(639_439) == "63943.90" and fut.qty(3) == "0.003"
    assert instrument("ETHUSDT", "binance-futures").price(299_941) == "2999.41"


def _book(market: SymbolMarket) -> tuple[dict, dict]:
    inst = market.inst
    return ({inst.price(p): inst.qty(q) for p, q in market.bids.items()},
            {inst.price(p): inst.qty(q) for p, q in market.asks.items()})


def test_diffs_and_trades_are_consistent_with_the_book():
    for venue in ("binance", "binance-futures"):
        assert len(SymbolMarket("BTCUSDT", venue, 9).bids) == 2500
        m = SymbolMarket("BTCUSDT", venue, 9, levels_per_side=1300)   # smaller: faster to compare
        assert len(m.bids) == 1300 and len(m.asks) == 1300
        prev_u = m.last_update_id
        kinds = {"removal": 0, "beyond_snapshot": 0, "unknown_removal": 0, "trades": 0, "jumps": 0}
        for i in range(50):
            bids_before, asks_before = _book(m)
            far_bid = sorted(bids_before, key=Decimal, reverse=True)[SNAPSHOT_DEPTH - 1]
            far_ask = sorted(asks_before, key=Decimal)[SNAPSHOT_DEPTH - 1]
            best_bid = max(bids_before, key=Decimal)
            best_ask = min(asks_before, key=Decimal)
            res = m.step(START_MS + 100 * (i + 1))
            d = res.depth
            assert 5 <= len(d.bids) + len(d.asks) <= 60
            assert [Decimal(p) for p, _ in d.bids] == sorted((Decimal(p) for p, _ in d.bids), reverse=True)
            assert [Decimal(p) for p, _ in d.asks] == sorted(Decimal(p) for p, _ in d.asks)
            # the diff is exactly the change of the book
            bids_after, asks_after = _book(m)
            for before, after, levels in ((bids_before, bids_after, d.bids), (asks_before, asks_after, d.asks)):
                expected = dict(before)
                for p, q in levels:
                    if Decimal(q) == 0:
                        kinds["removal"] += p in before
                        kinds["unknown_removal"] += p not in before
                        expected.pop(p, None)
                    else:
                        expected[p] = q
                assert expected == after
            kinds["beyond_snapshot"] += sum(Decimal(p) < Decimal(far_bid) for p, _ in d.bids)
            kinds["beyond_snapshot"] += sum(Decimal(p) > Decimal(far_ask) for p, _ in d.asks)
            # trades take size from the best level; the diff shows what is left
            taken: dict[tuple[bool, str], Decimal] = {}
            for t in res.trades:
                assert START_MS + 100 * i < t.trade_ms <= d.event_ms and t.trade_ms <= t.event_ms <= d.event_ms
                taken[(t.is_buyer_maker, t.price)] = taken.get((t.is_buyer_maker, t.price), 0) + Decimal(t.qty)
            for (hit_bid, price), qty in taken.items():
                before = bids_before if hit_bid else asks_before
                levels = dict(d.bids if hit_bid else d.asks)
                assert Decimal(levels[price]) == Decimal(before[price]) - qty
            if res.trades:
                first = res.trades[0]
                assert first.price == (best_bid if first.is_buyer_maker else best_ask)
            kinds["trades"] += len(res.trades)
            assert max(Decimal(p) for p in bids_after) < min(Decimal(p) for p in asks_after)
            # update ids
            assert d.prev_update_id == prev_u
            if venue == "binance":
                assert d.first_update_id == prev_u + 1
            else:
                kinds["jumps"] += d.first_update_id != prev_u + 1
            assert d.last_update_id >= d.first_update_id
            prev_u = d.last_update_id
        assert kinds["removal"] > 100 and kinds["unknown_removal"] > 50
        assert kinds["beyond_snapshot"] > 60 and kinds["trades"] > 20
        if venue == "binance-futures":
            assert kinds["jumps"] == 50
        assert 1000 < len(m.bids) < 1600 and 1000 < len(m.asks) < 1600


def test_merged_depth_equals_the_diffs_one_by_one():
    m = SymbolMarket("ETHUSDT", "binance-futures", 4)
    merger = DepthMerger(250, tick_ms=100)
    book_a: dict[tuple[str, str], str] = {}
    book_b: dict[tuple[str, str], str] = {}
    merged_events = []
    for r in _run(m, 40):
        for side, levels in (("b", r.depth.bids), ("a", r.depth.asks)):
            for p, q in levels:
                book_a[(side, p)] = q
        out = merger.add(r.depth)
        if out is not None:
            merged_events.append(out)
            for side, levels in (("b", out[5]), ("a", out[6])):
                for p, q in levels:
                    book_b[(side, p)] = q
            assert book_a == book_b
    # buckets of 250 ms on a 100 ms tick: E ends ...2900, 3100/3200, ...
    assert len(merged_events) == 16
    for prev, cur in zip(merged_events, merged_events[1:]):
        assert cur[4] == prev[3]          # pu of a merged diff = u of the previous merged diff
        assert cur[0] // 250 == prev[0] // 250 + 1
