"""A client following Binance's procedure over real sockets stays equal to the exchange's ground truth."""

from __future__ import annotations

import json
import os
import time

import pytest

from midas.exchange import LocalExchange, read_sent_messages, read_truth_book, read_truth_trades

GRID_US = 100_000


# The figure is 30 s per venue: `MIDAS_EXCHANGE_SYNC_SECS=30 pytest tests/exchange -k procedure`.
# The default suite runs 5 s per venue (about 50 grid rows and 100 diffs per symbol, two symbols)
# to stay in its time budget.
RUN_SECS = float(os.environ.get("MIDAS_EXCHANGE_SYNC_SECS", "5"))


# Spot: E on the 100 ms grid (E*1000 == a grid time: the `<=` edge); futures: E jittered off it.
@pytest.mark.parametrize("venue,limit,jitter", [("binance", 5000, 0), ("binance-futures", 1000, 70)])
def test_procedure_client_equals_truth(venue, limit, jitter, tmp_path, refbook, stream_client, get,
                                       book_at_fn):
    run_secs = RUN_SECS
    symbols = ["BTCUSDT", "ETHUSDT"]
    futures = venue == "binance-futures"
    depth_path = "/fapi/v1/depth" if futures else "/api/v3/depth"
    truth = tmp_path / "truth"
    with LocalExchange(venue=venue, symbols=symbols, seed=11, truth_dir=truth, tick_jitter_ms=jitter) as ex:
        depth_streams = "/".join(f"{s.lower()}@depth@100ms" for s in symbols)
        trade_streams = "/".join(f"{s.lower()}@trade" for s in symbols)
        # Futures serves depth on /public and trades on /market; spot both on one connection.
        if futures:
            client = stream_client(f"{ex.ws_url}/public/stream?streams={depth_streams}")
            trade_client = stream_client(f"{ex.ws_url}/market/stream?streams={trade_streams}")
        else:
            client = stream_client(f"{ex.ws_url}/stream?streams={depth_streams}/{trade_streams}")
            trade_client = None
        client.wait_for(lambda: len(client.frames) >= 4, what="the first diffs")
        snapshots = {}
        for s in symbols:
            status, headers, body = get(f"{ex.rest_url}{depth_path}?symbol={s}&limit={limit}")
            assert status == 200, body
            snapshots[s] = json.loads(body)
            if limit <= 1000:
                assert len(snapshots[s]["bids"]) == limit and len(snapshots[s]["asks"]) == limit
            else:   # the whole simulated book: about 2500 levels a side
                assert 2000 < len(snapshots[s]["bids"]) < 3000 and 2000 < len(snapshots[s]["asks"]) < 3000
            if futures:
                assert set(snapshots[s]) == {"lastUpdateId", "E", "T", "bids", "asks"}
            else:
                assert set(snapshots[s]) == {"lastUpdateId", "bids", "asks"}
        time.sleep(run_secs)
        client.close()
        if trade_client is not None:
            trade_client.close()
    received = list(client.frames) + (list(trade_client.frames) if trade_client else [])

    books = {s: refbook(s, futures) for s in symbols}
    trades = {s: [] for s in symbols}
    prev_u = {s: None for s in symbols}
    id_jumps = {s: 0 for s in symbols}
    snapshot_loaded = {s: False for s in symbols}
    off_grid = {s: [] for s in symbols}
    for frame in received:
        msg = json.loads(frame)
        stream, data = msg["stream"], msg["data"]
        symbol = data["s"]
        assert stream.startswith(symbol.lower() + "@")
        if data["e"] == "depthUpdate":
            expected_keys = {"e", "E", "s", "U", "u", "b", "a"} | ({"T", "pu"} if futures else set())
            assert set(data) == expected_keys
            assert 5 <= len(data["b"]) + len(data["a"]) <= 65
            if prev_u[symbol] is not None:
                if futures:
                    assert data["pu"] == prev_u[symbol]
                    id_jumps[symbol] += data["U"] != prev_u[symbol] + 1
                else:
                    assert data["U"] == prev_u[symbol] + 1
            prev_u[symbol] = data["u"]
            off_grid[symbol].append(data["E"] % 100 != 0)
            books[symbol].on_diff(data)
            if not snapshot_loaded[symbol] and data["u"] >= snapshots[symbol]["lastUpdateId"]:
                assert books[symbol].load_snapshot(snapshots[symbol])
                snapshot_loaded[symbol] = True
        else:
            assert data["e"] == "trade"
            trades[symbol].append(data)

    for s in symbols:
        book = books[s]
        assert book.synced and book.gaps == 0 and book.duplicates == 0
        if jitter:
            assert sum(off_grid[s]) > len(off_grid[s]) / 2       # most E are off the grid
        else:
            assert not any(off_grid[s])
        if futures:
            # ids jump: a client using the spot rule would see a gap on (almost) every diff
            assert id_jumps[s] >= len(book.applied) - 2
        rows = [r for r in read_truth_book(truth, s)]
        first_e, last_e = book.applied[0][0], book.applied[-1][0]
        start = -(-first_e * 1000 // GRID_US) * GRID_US
        in_span = [r for r in rows if start <= r[0] <= last_e * 1000]
        expected_count = (last_e * 1000 // GRID_US) - start // GRID_US + 1
        assert len(in_span) == expected_count
        assert expected_count >= run_secs * 10 * 0.6
        for ts, bids, asks in in_span:
            assert len(bids) == 10 and len(asks) == 10
            assert book_at_fn(book.applied, ts) == (bids, asks), f"{s} differs from truth at {ts}"
        # trades: exactly the truth's trades over the connection's life, every field
        truth_trades = list(read_truth_trades(truth, s))
        got = trades[s]
        assert len(got) >= 10
        first = next(i for i, t in enumerate(truth_trades) if t["trade_id"] == got[0]["t"])
        window = truth_trades[first:first + len(got)]
        assert [(t["t"], t["p"], t["q"], t["m"], t["T"] * 1000, t["E"] * 1000, t.get("X"))
                for t in got] == [
            (t["trade_id"], t["price"], t["qty"], t["is_buyer_maker"], t["trade_ts"], t["exchange_ts"],
             t["trade_type"]) for t in window]
    # the truth of sent frames is exactly what the client received
    sent = read_sent_messages(truth)
    if futures:
        assert list(sent) == [1, 2]
        assert (sent[1], sent[2]) == (client.frames, trade_client.frames)
    else:
        assert list(sent) == [1]
        assert sent[1] == received


def test_exchange_clock_offset_and_grid(tmp_path, stream_client):
    with LocalExchange(venue="binance-futures", symbols=["BTCUSDT"], seed=3, clock_offset_ms=1300,
                       truth_dir=tmp_path) as ex:
        client = stream_client(f"{ex.ws_url}/ws/btcusdt@depth@100ms")
        client.wait_for(lambda: len(client.frames) >= 3, what="three diffs")
        received_at = time.time() * 1000
        stats = ex.stats()
        client.close()
    assert stats["connections"] == 1 and stats["ticks"] >= 3
    assert stats["messages_sent"] >= 3 and stats["max_lag_ms"] >= 0
    diffs = [json.loads(f) for f in client.frames]
    for d in diffs:
        assert d["E"] % 100 == 0 and d["T"] <= d["E"]
    # E runs 1.3 s ahead of this machine's clock (allowing for a loaded box)
    assert 1300 - 3000 < diffs[-1]["E"] - received_at <= 1300
    assert diffs[1]["E"] - diffs[0]["E"] == 100
