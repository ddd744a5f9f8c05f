"""USD-M futures routes streams by path: the collector reads depth on /public and trades on /market
as one connection, so losing either socket is a declared outage followed by a resync, never a
silent hole in the trades."""

from __future__ import annotations

from midas.collector import CollectorOptions
from midas.config import load_settings
from midas.exchange import LocalExchange, read_connections

VENUE = "binance-futures"


def test_losing_only_the_trades_socket_reopens_both_and_resyncs(tmp_path, coll):
    truth = tmp_path / "truth"
    with LocalExchange(venue=VENUE, symbols=["BTCUSDT"], seed=21, truth_dir=truth) as ex:
        settings = load_settings(env_file=None, data_dir=tmp_path / "data", ws_url=ex.ws_url,
                                 rest_url=ex.rest_url, venue=VENUE, symbols=["BTCUSDT"],
                                 streams=["depth", "trade"], reconnect_delay_secs=0.2)
        with coll.RunningCollector(settings, CollectorOptions(health_interval_secs=1.0)) as run:
            accepted = run.collector.router.accepted
            run.wait_for(lambda: accepted["trade"] >= 5 and accepted["depth"] >= 5, what="trades and diffs")

            def drop_market_sockets() -> int:
                market = [c for c in ex.server.connections.values() if c.path.startswith("/market/")]
                for conn in market:
                    conn.abort()          # the TCP connection vanishes, no close frame
                return len(market)

            assert ex.call(drop_market_sockets) == 1
            trades_before = accepted["trade"]
            run.wait_for(lambda: run.collector.router.snapshots_total >= 2 and accepted["trade"] > trades_before + 5,
                         timeout=30, what="the reconnect, a new snapshot and new trades")
        summary = run.summary
    opens = [c["path"].split("?")[0] for c in read_connections(truth) if c["event"] == "open"]
    # both sockets were reopened, though only the trades socket was lost
    assert sorted(opens) == ["/market/stream", "/market/stream", "/public/stream", "/public/stream"]
    assert summary.reconnects == 1

    records = coll.collected(tmp_path / "data", VENUE, "BTCUSDT")
    events = [(r["event"], r["detail"]) for r in records if r["type"] == "event"]
    kinds = [e for e, _ in events]
    assert kinds == ["connected", "disconnected", "connected", "resync", "disconnected", "shutdown"]
    assert events[1][1] == "connection 1: connection lost (no close frame)"
    assert events[2][1] == (f"connection 2 to {ex.ws_url}/public/stream (1 streams) + "
                            f"{ex.ws_url}/market/stream (1 streams)")
    assert events[3][1].startswith("snapshot lastUpdateId=") and events[3][1].endswith(" after connect")
    # after the outage the book starts again from a new snapshot, bridged by a diff of the new
    # connection (diffs received while the snapshot was requested may come before it in the file)
    after = records[records.index(next(r for r in records if r.get("event") == "disconnected")):]
    snap = next(r for r in after if r["type"] == "snapshot")
    lid = snap["last_update_id"]
    assert any(d["first_update_id"] <= lid <= d["last_update_id"] or d["prev_update_id"] == lid
               for d in after if d["type"] == "depth")
    # every message each socket delivered is in the files once, in its order
    lost = coll.match_connection_prefixes(coll.data_records(records), coll.sent_records(truth, VENUE), "BTCUSDT")
    assert sorted(lost) == [1, 2, 3, 4]
