"""The local Binance-compatible exchange: simulated market or replayed recording, with faults.

Public API
----------
    from midas.exchange import LocalExchange, Faults

    with LocalExchange(venue="binance-futures", symbols=["BTCUSDT"], seed=7, faults=Faults(...),
                       truth_dir=None, replay=None, speed=1.0, clock_offset_ms=1300, port=0,
                       subprocess=False, **options) as ex:
        ex.ws_url      # "ws://127.0.0.1:PORT"   (WebSocket: /stream?streams=..., /ws/<stream>)
        ex.rest_url    # "http://127.0.0.1:PORT" (REST: /api/v3/depth or /fapi/v1/depth, ping, time)
        ex.port        # the port (WebSocket and REST)
        ex.stats()     # in-thread: {"ticks", "max_lag_ms", "mean_lag_ms", "messages_sent", "connections", ...}
        ex.output      # subprocess: its last output lines (the stats are printed when it stops)
    # ex.stop() is called on leaving the block; the truth files are complete after it.

    venue      "binance" or "binance-futures"; None = futures, or the recording's venue in replay
    symbols    simulated symbols (list or "A,B"); ignored in replay (the recording's symbols)
    seed       the simulated market is the same for the same seed (only E/T follow the clock)
    replay     recording path(s) to serve instead of the simulation; speed 0 = as fast as read
    truth_dir  write ground truth there (formats and readers: midas.exchange.truth)
    subprocess run `python -m midas.cli exchange ... --port 0` instead of a thread
    options    any other ExchangeConfig field: tick_ms (100), tick_jitter_ms (0: E on the 100 ms
               grid; e.g. 70: E moved by a seeded 0..70 ms), truth_depth (10), grid_ms (100),
               ping_interval_secs (venue: 20 / 180), pong_timeout_secs (venue: 60 / 600), weight_budget
               (venue: 6000 / 2400 per minute), message_limit (venue: 5 / 10 per second),
               levels_per_side (2500), max_queue_messages (200000)

    Faults(...)  every field off by default; see midas.exchange.faults.Faults for each one:
        disconnect_every_secs, drop_diffs + drop_every_secs, duplicate_every, malformed_every,
        stall_secs + stall_after_secs, max_connection_age_secs, rest_fail_status,
        rest_fail_first, rest_fail_rate, rest_retry_after_secs, rest_slow_secs,
        rest_slow_first, rest_slow_rate

Truth readers (midas.exchange.truth):
    read_truth_book(truth_dir, symbol) -> iterator of (ts_us, bids, asks)  (top levels, strings)
    read_truth_trades(truth_dir, symbol) -> iterator of trade dicts (SPEC §2 field names)
    read_sent_messages(truth_dir) -> {connection id: [exact text frames sent, in order]}
    read_connections(truth_dir) -> [{"connection", "event": "open"|"close", "path", "local_ns"}]

Lower level: ExchangeServer(ExchangeConfig(...)) with `await start()` / `await stop()` runs in an
existing event loop; SymbolMarket is the pure per-symbol simulation.
"""

from midas.exchange.faults import Faults
from midas.exchange.local import LocalExchange
from midas.exchange.market import SymbolMarket
from midas.exchange.server import ExchangeConfig, ExchangeServer
from midas.exchange.truth import (read_connections, read_sent_messages, read_truth_book,
                                  read_truth_trades)

__all__ = ["LocalExchange", "Faults", "ExchangeConfig", "ExchangeServer", "SymbolMarket",
           "read_truth_book", "read_truth_trades", "read_sent_messages", "read_connections"]
