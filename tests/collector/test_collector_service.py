"""The collector as a service: weight pacing over many symbols (24; 200 subscribed by SUBSCRIBE
requests), write errors, health reports, trade-only collection, giving up after
MAX_RECONNECT_ATTEMPTS, stream groups."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading

import pytest

from midas.collector import CollectorOptions, plan_groups, run_collector
from midas.config import load_settings
from midas.errors import CollectorError, ExchangeError
from midas.exchange import LocalExchange
from midas.layout import list_raw_files, parse_hour, raw_file_path
from midas.raw import RawFileWriter

VENUE = "binance-futures"


def test_plan_groups_respects_the_stream_cap():
    syms = [f"S{i}USDT" for i in range(7)]
    assert plan_groups(syms, ["depth", "trade"], 4) == [syms[0:2], syms[2:4], syms[4:6], syms[6:7]]
    assert plan_groups(syms, ["depth", "trade", "bookTicker"], 1024) == [syms]
    assert plan_groups([f"S{i}USDT" for i in range(600)], ["depth", "trade"], 1024)[1][0] == "S512USDT"


def test_weight_pacing_over_many_symbols_never_meets_a_429(tmp_path, coll):
    symbols = [f"SYM{i:02d}USDT" for i in range(24)]
    # 24 snapshots of weight 10 (limit 500) = 240 > the exchange's 200 per minute: they must wait.
    with LocalExchange(venue=VENUE, symbols=symbols, seed=9, weight_budget=200) as ex:
        settings = load_settings(env_file=None, data_dir=tmp_path / "data", ws_url=ex.ws_url,
                                 rest_url=ex.rest_url, venue=VENUE, symbols=symbols,
                                 snapshot_depth_limit=500)
        options = CollectorOptions(health_interval_secs=5, rest_weight_budget=200)
        with coll.RunningCollector(settings, options) as run:
            run.wait_for(lambda: sum(run.collector.client.answers.values()) >= 3, timeout=30,
                         what="3 snapshot answers")
        summary = run.summary
    times = [t for t, _ in summary.rest_sends]
    # Burst: 10 % of 200 = 20 weight = 2 requests at once; then 80 % of 200 per minute = 1 every 3.75 s.
    assert times[1] - times[0] < 0.5
    assert times[2] - times[0] >= 3.75 - 0.05
    assert set(summary.rest_answers) == {200}
    assert summary.rest_max_used_weight <= 200
    opened = [s for s in symbols if list_raw_files(tmp_path / "data", VENUE, s)]
    assert len(opened) == 24          # every symbol's data is in a file, with or without a snapshot
    with_snapshot = 0
    for s in symbols:
        recs = coll.file_records(list_raw_files(tmp_path / "data", VENUE, s)[0])
        if recs[0]["type"] == "snapshot":
            with_snapshot += 1
        else:
            assert recs[-1]["detail"] == ("collector stopped; no snapshot arrived before the end, "
                                          "this file has none")
    assert with_snapshot == summary.rest_answers[200] == summary.snapshots


def test_weight_pacing_holds_over_200_symbols(tmp_path, coll):
    symbols = [f"S{i:03d}USDT" for i in range(200)]
    budget = 1500
    # 200 snapshots of weight 2 (limit 50) = 400: a burst of 10 % of the budget (150 = 75 requests)
    # goes at once, the rest at 80 % of the budget per minute (20 weight = 10 requests a second).
    # The exchange enforces the same budget per minute and would answer 429 to anything above it.
    with LocalExchange(venue=VENUE, symbols=symbols, seed=3, weight_budget=budget) as ex:
        settings = load_settings(env_file=None, data_dir=tmp_path / "data", ws_url=ex.ws_url,
                                 rest_url=ex.rest_url, venue=VENUE, symbols=symbols,
                                 streams=["depth", "trade"], snapshot_depth_limit=50)
        options = CollectorOptions(health_interval_secs=60, rest_weight_budget=budget)
        with coll.RunningCollector(settings, options) as run:
            run.wait_for(lambda: all(s.files.has_file for s in run.collector.states.values()), timeout=25,
                         what="a file opened with a snapshot for each of the 200 symbols")
        summary = run.summary
    assert summary.rest_answers == {200: len(summary.rest_sends)}
    assert summary.rest_max_used_weight <= budget
    sends = sorted(summary.rest_sends)
    t0 = sends[0][0]
    burst, rate = 0.1 * budget, 0.8 * budget / 60
    sent = 0.0
    for t, weight in sends:          # never ahead of the token bucket (a 10 ms scheduling allowance)
        sent += weight
        assert sent <= burst + rate * (t - t0 + 0.01), (t - t0, sent)
    assert len(sends) >= 200 and sends[-1][0] - t0 >= (400 - burst) / rate - 0.5
    for s in symbols:
        recs = coll.file_records(list_raw_files(tmp_path / "data", VENUE, s)[0])
        assert recs[0]["type"] == "snapshot" and recs[0]["depth_limit"] == 50
        assert len(recs[0]["bids"]) == 50


class FullDisk:
    def __init__(self, real):
        self.real = real

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
        pass

    def fileno(self):
        return self.real.fileno()

    def close(self):
        self.real.close()


def test_disk_full_stops_cleanly_and_every_closed_file_is_valid(tmp_path, coll):
    symbols = ["BTCUSDT", "ETHUSDT"]
    data = tmp_path / "data"
    with LocalExchange(venue=VENUE, symbols=symbols, seed=2) as ex:
        settings = load_settings(env_file=None, data_dir=data, ws_url=ex.ws_url, rest_url=ex.rest_url,
                                 venue=VENUE, symbols=symbols, flush_interval_secs=0.2)
        run = coll.RunningCollector(settings, CollectorOptions(health_interval_secs=5))
        with pytest.raises(CollectorError) as err:
            with run:
                run.wait_for(lambda: all(s.files.has_file and s.files.bytes_written > 0
                                         for s in run.collector.states.values()), 30, "files")
                files = run.collector.states["BTCUSDT"].files
                files.current._fh = FullDisk(files.current._fh)
                run.wait_for(lambda: run.error is not None or not run._thread.is_alive(), 30, "the stop")
    partial = list_raw_files(data, VENUE, "BTCUSDT", partial=True)
    assert len(partial) == 1
    assert str(err.value).startswith(f"cannot write raw file {partial[0]}: the disk is full (ENOSPC). "
                                     "Collection stopped")
    assert coll.file_records(partial[0])[0]["type"] == "snapshot"    # valid up to the last good frame
    assert list_raw_files(data, VENUE, "BTCUSDT") == []
    eth = list_raw_files(data, VENUE, "ETHUSDT")
    assert len(eth) == 1 and list_raw_files(data, VENUE, "ETHUSDT", partial=True) == []
    recs = coll.file_records(eth[0])
    assert recs[0]["type"] == "snapshot" and recs[-1]["event"] == "shutdown"
    assert recs[-1]["detail"].startswith("collector stopped by an error: cannot write raw file ")


def test_health_reports_and_trade_only_collection(tmp_path, coll, caplog):
    symbols = ["BTCUSDT", "ETHUSDT"]
    reports = []
    caplog.set_level(logging.INFO, logger="midas.collector")
    # A crash left a .partial of a symbol not collected this time: it is finalized all the same.
    left = RawFileWriter(raw_file_path(tmp_path / "data", VENUE, "XRPUSDT", parse_hour("2024-07-18T23"), 0),
                         fsync=False)
    left.write({"type": "event", "venue": VENUE, "symbol": "XRPUSDT", "exchange_ts": None, "local_ts": 1,
                "event": "connected", "detail": "connection 1"})
    left.flush()
    left.abort()
    with LocalExchange(venue=VENUE, symbols=symbols, seed=8, truth_dir=tmp_path / "truth") as ex:
        settings = load_settings(env_file=None, data_dir=tmp_path / "data", ws_url=ex.ws_url,
                                 rest_url=ex.rest_url, venue=VENUE, symbols=symbols, streams=["trade"])
        with coll.RunningCollector(settings, CollectorOptions(health_interval_secs=0.5),
                                   on_health=reports.append) as run:
            run.wait_for(lambda: len(reports) >= 4, 30, "4 health reports")
            ex.stop()
            run.wait_for(run.all_disconnected, 20, "the final disconnect")
    summary = run.summary
    assert summary.snapshot_requests == 0 and summary.rest_sends == []
    assert [r.final_path for r in summary.salvaged] == [left.final_path]
    assert summary.salvaged[0].records_kept == 1 and left.final_path.exists()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("collector health ")]
    assert lines[:len(reports)] == [r.line() for r in reports]
    assert sum(r.reconnects for r in reports) == 1     # the exchange went away at the end
    for r in reports[:-1]:
        assert 0.4 <= r.interval_secs <= 5.0
    for r in reports:
        assert r.messages["depth"] == 0 and r.messages["book_ticker"] == 0
        assert r.messages_per_sec["trade"] == pytest.approx(r.messages["trade"] / r.interval_secs)
    busy = [r for r in reports if r.messages["trade"]]
    assert busy and all(set(r.lag_ms) <= set(symbols) for r in busy)
    # The exchange's clock runs 1.3 s ahead: receive lag is negative (-1300 ms plus the delivery time).
    assert all(-1400 <= p50 < 0 for r in busy for p50, _ in r.lag_ms.values())
    assert sum(r.messages["trade"] for r in reports) == summary.messages["trade"]
    sent = coll.sent_records(tmp_path / "truth", VENUE)
    for s in symbols:
        recs = coll.collected(tmp_path / "data", VENUE, s)
        assert recs[0]["type"] == "event" and recs[0]["event"] == "connected"   # no depth: no snapshot
        assert [coll.strip_local(r) for r in coll.data_records(recs)] == \
            [coll.strip_local(r) for r in sent.unique(s)]


def test_gives_up_after_max_reconnect_attempts(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]          # nothing listens there once closed
    settings = load_settings(env_file=None, data_dir=tmp_path / "data", ws_url=f"ws://127.0.0.1:{port}",
                             rest_url=f"http://127.0.0.1:{port}", venue=VENUE, symbols=["BTCUSDT"],
                             reconnect_delay_secs=0.05, max_reconnect_attempts=3)
    with pytest.raises(CollectorError) as err:
        run_collector(settings, duration=60, handle_signals=False)
    # the first socket of the connection (futures: depth on /public) is the one that failed
    assert str(err.value).startswith(f"cannot connect to ws://127.0.0.1:{port}/public/stream?streams="
                                     "btcusdt@depth@100ms: ")
    assert str(err.value).endswith("gave up after 3 attempts (MAX_RECONNECT_ATTEMPTS)")
    assert list((tmp_path / "data").rglob("*.zst*")) == []


def test_collect_command_that_never_connected_is_an_error(tmp_path, capsys):
    from midas.cli import main

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]          # nothing listens there once closed
    code = main(["collect", "--venue", "binance", "--symbols", "BTCUSDT", "--duration", "1.5",
                 "--data-dir", str(tmp_path / "data"), "--ws-url", f"ws://127.0.0.1:{port}",
                 "--rest-url", f"http://127.0.0.1:{port}"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"error: nothing collected: no connection to ws://127.0.0.1:{port} succeeded in " in err
    assert " s (the log above says why); check WS_URL and the network" in err


def test_an_unknown_symbol_stops_with_the_exchanges_answer(tmp_path):
    with LocalExchange(venue=VENUE, symbols=["BTCUSDT"], seed=2) as ex:
        settings = load_settings(env_file=None, data_dir=tmp_path / "data", ws_url=ex.ws_url,
                                 rest_url=ex.rest_url, venue=VENUE, symbols=["BTCUSDT", "NOPEUSDT"])
        with pytest.raises(CollectorError) as err:
            run_collector(settings, duration=30, handle_signals=False)
    assert str(err.value) == (
        'the exchange refused the stream subscription: HTTP 400 {"code":-1121,"msg":"unknown symbol in '
        "stream 'nopeusdt@depth@100ms': this exchange serves btcusdt\"} (check SYMBOLS and STREAMS)")
    assert list((tmp_path / "data").rglob("*.zst*")) == []


def test_a_symbol_refused_by_rest_stops_with_the_exchanges_answer(tmp_path):
    # REST knows only what the exchange simulates; the streams of a known symbol are fine.
    with LocalExchange(venue=VENUE, symbols=["BTCUSDT"], seed=2) as ex:
        settings = load_settings(env_file=None, data_dir=tmp_path / "data", ws_url=ex.ws_url,
                                 rest_url=ex.rest_url, venue=VENUE, symbols=["BTCUSDT"],
                                 snapshot_depth_limit=1000)
        from midas.collector.service import Collector
        collector = Collector(settings)
        collector.client.depth_limit = 7          # not a futures limit: the exchange answers -1130
        with pytest.raises(CollectorError) as err:
            asyncio.run(collector.run(30, asyncio.Event()))
    assert isinstance(err.value.__cause__, ExchangeError) and err.value.__cause__.status == 400
    assert str(err.value).startswith("depth snapshot of BTCUSDT on binance-futures refused: HTTP 400 "
                                     '{"code":-1130,')
    files = list_raw_files(tmp_path / "data", VENUE, "BTCUSDT")
    assert list((tmp_path / "data").rglob("*.partial")) == []
    assert len(files) == 1
    assert files[0].name.startswith("BTCUSDT_")


def test_the_async_and_the_threaded_entry_points(tmp_path):
    from midas.collector import collect

    with LocalExchange(venue=VENUE, symbols=["BTCUSDT"], seed=6) as ex:
        settings = load_settings(env_file=None, data_dir=tmp_path / "data", ws_url=ex.ws_url,
                                 rest_url=ex.rest_url, venue=VENUE, symbols=["BTCUSDT"])
        first = asyncio.run(collect(settings, duration=1.5))
        stop = threading.Event()
        timer = threading.Timer(1.5, stop.set)
        timer.start()
        second = run_collector(settings, stop_event=stop, handle_signals=False)
        timer.join()
    assert first.seconds >= 1.5 and second.seconds >= 1.5
    assert first.messages["depth"] > 0 and second.messages["depth"] > 0
    files = list_raw_files(tmp_path / "data", VENUE, "BTCUSDT")
    assert files == first.files + second.files and len(files) == 2
    assert list((tmp_path / "data").rglob("*.partial")) == []


def test_a_refused_subscribe_request_stops_with_the_exchanges_answer(tmp_path):
    from midas.collector import CollectorOptions, collect

    with LocalExchange(venue=VENUE, symbols=["BTCUSDT"], seed=2) as ex:
        settings = load_settings(env_file=None, data_dir=tmp_path / "data", ws_url=ex.ws_url,
                                 rest_url=ex.rest_url, venue=VENUE, symbols=["BTCUSDT", "NOPEUSDT"])
        with pytest.raises(CollectorError) as err:
            asyncio.run(collect(settings, duration=30, options=CollectorOptions(max_url_chars=0)))
    assert str(err.value).startswith("the exchange refused the stream subscription: {'code': 2, 'msg': ")
    assert "nopeusdt" in str(err.value) and str(err.value).endswith("(check SYMBOLS and STREAMS)")
