"""pending_hours: closed, final, unprocessed or changed exchange hours, on real raw files."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from midas.config import load_settings
from midas.layout import hour_start_us, parse_hour, raw_file_path
from midas.raw import RawFileWriter
from midas.scheduling import (HourKey, hour_fingerprint, hour_statuses, pending_hours,
                              processed_hours, ready_hours, record_processed, state_dir)

VENUE = "binance-futures"
SEC = 1_000_000


def _settings(tmp_path, symbols=("BTCUSDT",)):
    return load_settings(env_file=None, data_dir=tmp_path, venue=VENUE, symbols=list(symbols))


def _depth(symbol: str, local_ts: int, exchange_ts: int, update_id: int) -> dict:
    return {"type": "depth", "venue": VENUE, "symbol": symbol, "exchange_ts": exchange_ts,
            "local_ts": local_ts, "transaction_ts": exchange_ts - 1000, "first_update_id": update_id,
            "last_update_id": update_id, "prev_update_id": update_id - 1,
            "bids": [["100.0", "1"]], "asks": [["100.5", "2"]]}


def _write_local_hour(data_dir, symbol: str, local_hour: str, skew_us: int, *, part: int = 0,
                      step_us: int = 600 * SEC, close: bool = True) -> RawFileWriter:
    """A raw file of one local hour: a record every `step_us`, exchange time = local + skew."""
    hour = parse_hour(local_hour)
    writer = RawFileWriter(raw_file_path(data_dir, VENUE, symbol, hour, part))
    start = hour_start_us(hour)
    local = start
    uid = 1
    while local < start + 3600 * SEC:
        writer.write(_depth(symbol, local, local + skew_us, uid))
        uid += 1
        local += step_us
    last = start + 3600 * SEC - 1        # the last microsecond of the local hour
    writer.write(_depth(symbol, last, last + skew_us, uid))
    writer.flush()
    if close:
        writer.close()
    return writer


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_every_closed_hour_is_pending_after_an_outage(tmp_path):
    s = _settings(tmp_path)
    for h in ("2024-07-18T10", "2024-07-18T11", "2024-07-18T12"):
        _write_local_hour(tmp_path, "BTCUSDT", h, skew_us=1_500_000)   # local clock 1.5 s behind
    now = _at("2024-07-18T13:02:00")
    assert pending_hours(s, now=now) == [
        HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-18T10")),
        HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-18T11")),
        HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-18T12")),
    ]
    # File T12's last 1.5 s hold events of exchange hour 13: known, but hour 13 is not closed.
    waiting = [st for st in hour_statuses(s, now=now) if st.state == "waiting"]
    assert [(format(st.hour, "%H"), st.reason) for st in waiting] == [("13", "the hour has not closed yet")]


def test_an_hour_closes_one_minute_after_its_end(tmp_path):
    s = _settings(tmp_path)
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T10", skew_us=0)
    assert pending_hours(s, now=_at("2024-07-18T11:00:59")) == []
    assert pending_hours(s, now=_at("2024-07-18T11:01:00")) == [
        HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-18T10"))]


def test_neighbouring_local_hour_files_belong_to_the_hour(tmp_path):
    s = _settings(tmp_path)
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T10", skew_us=-1_500_000)   # clock ahead
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T11", skew_us=-1_500_000)
    fp = hour_fingerprint(s, VENUE, "BTCUSDT", parse_hour("2024-07-18T10"))
    assert sorted(fp) == ["raw/binance-futures/BTCUSDT/2024-07-18/BTCUSDT_20240718T10_0.jsonl.zst",
                          "raw/binance-futures/BTCUSDT/2024-07-18/BTCUSDT_20240718T11_0.jsonl.zst"]
    fp09 = hour_fingerprint(s, VENUE, "BTCUSDT", parse_hour("2024-07-18T09"))
    assert sorted(fp09) == ["raw/binance-futures/BTCUSDT/2024-07-18/BTCUSDT_20240718T10_0.jsonl.zst"]


def test_partial_file_with_clock_ahead_holds_back_the_previous_hour(tmp_path):
    s = _settings(tmp_path)
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T10", skew_us=-1_500_000)
    # The collector is writing local hour 11; its first events are exchange 10:59:58.5.
    writer = _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T11", skew_us=-1_500_000, close=False)
    now = _at("2024-07-18T11:05:00")
    # Hour 09 (the first 1.5 s of file T10) cannot be in the .partial: it is ready.
    assert pending_hours(s, now=now) == [HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-18T09"))]
    statuses = {format(st.hour, "%H"): (st.state, st.reason) for st in hour_statuses(s, now=now)}
    assert statuses == {
        "09": ("pending", "never processed"),
        "10": ("waiting", "raw file BTCUSDT_20240718T11_0.jsonl.zst.partial is still being written "
                          "(left by a crash? the next collector start finalizes it)"),
    }
    writer.close()
    assert pending_hours(s, now=_at("2024-07-18T12:05:00")) == [
        HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-18T09")),
        HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-18T10")),
        HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-18T11")),
    ]


def test_partial_file_with_clock_behind_does_not_hold_back_the_previous_hour(tmp_path):
    s = _settings(tmp_path)
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T10", skew_us=1_500_000)
    writer = _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T11", skew_us=1_500_000,
                               step_us=60 * SEC, close=False)
    assert pending_hours(s, now=_at("2024-07-18T11:05:00")) == [
        HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-18T10"))]
    writer.abort()


def test_empty_partial_file_holds_back_the_previous_hour(tmp_path):
    s = _settings(tmp_path)
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T10", skew_us=1_500_000)
    writer = RawFileWriter(raw_file_path(tmp_path, VENUE, "BTCUSDT", parse_hour("2024-07-18T11"), 0))
    statuses = hour_statuses(s, now=_at("2024-07-18T11:05:00"))
    assert [(format(st.hour, "%H"), st.state) for st in statuses] == [("10", "waiting"), ("11", "waiting")]
    writer.abort()


def test_processed_hour_is_pending_again_when_its_raw_files_change(tmp_path):
    s = _settings(tmp_path)
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T10", skew_us=1_500_000)
    now = _at("2024-07-18T12:00:00")
    h10 = parse_hour("2024-07-18T10")
    assert pending_hours(s, now=now) == [HourKey(VENUE, "BTCUSDT", h10)]
    record_processed(s, VENUE, "BTCUSDT", h10, hour_fingerprint(s, VENUE, "BTCUSDT", h10),
                     {"rows": {"book": 5}, "gaps": 0, "seconds": 0.5})
    assert pending_hours(s, now=now) == []
    assert processed_hours(s)["binance-futures/BTCUSDT/2024-07-18T10"]["rows"] == {"book": 5}
    # A second part appears for local hour 10 (e.g. an import or a size rotation): hour 10 changed.
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T10", skew_us=1_500_000, part=1, step_us=1200 * SEC)
    statuses = {format(st.hour, "%H"): (st.state, st.reason) for st in hour_statuses(s, now=now)}
    assert statuses["10"] == ("changed", "raw files changed since it was processed")
    assert pending_hours(s, now=now) == [HourKey(VENUE, "BTCUSDT", h10)]
    record_processed(s, VENUE, "BTCUSDT", h10, hour_fingerprint(s, VENUE, "BTCUSDT", h10))
    assert pending_hours(s, now=now) == []
    # A file removed is a change too.
    raw_file_path(tmp_path, VENUE, "BTCUSDT", h10, 1).unlink()
    assert pending_hours(s, now=now) == [HourKey(VENUE, "BTCUSDT", h10)]


def test_every_configured_symbol_is_scheduled(tmp_path):
    s = _settings(tmp_path, symbols=("BTCUSDT", "ETHUSDT"))
    _write_local_hour(tmp_path, "ETHUSDT", "2024-07-18T10", skew_us=1_000_000)
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T10", skew_us=1_000_000)
    _write_local_hour(tmp_path, "SOLUSDT", "2024-07-18T10", skew_us=1_000_000)   # not configured
    assert pending_hours(s, now=_at("2024-07-18T11:30:00")) == [
        HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-18T10")),
        HourKey(VENUE, "ETHUSDT", parse_hour("2024-07-18T10")),
    ]


def test_raw_files_are_read_once_until_they_change(tmp_path, caplog):
    s = _settings(tmp_path)
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T10", skew_us=1_000_000)
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T11", skew_us=1_000_000)
    now = _at("2024-07-18T13:00:00")
    def indexed_files() -> set[str]:
        return {r.getMessage().split(" file=")[1].split()[0] for r in caplog.records
                if r.getMessage().startswith("raw file indexed ")}

    with caplog.at_level(logging.INFO, logger="midas.scheduling"):
        pending_hours(s, now=now)
        assert indexed_files() == {"raw/binance-futures/BTCUSDT/2024-07-18/BTCUSDT_20240718T10_0.jsonl.zst",
                                   "raw/binance-futures/BTCUSDT/2024-07-18/BTCUSDT_20240718T11_0.jsonl.zst"}
        written = (state_dir(s) / "raw_index.json").stat().st_mtime_ns
        caplog.clear()
        pending_hours(s, now=now)
        assert indexed_files() == set()
        assert (state_dir(s) / "raw_index.json").stat().st_mtime_ns == written
    index = orjson.loads((state_dir(s) / "raw_index.json").read_bytes())
    assert index["files"]["raw/binance-futures/BTCUSDT/2024-07-18/BTCUSDT_20240718T11_0.jsonl.zst"][
        "hours"] == ["2024-07-18T11", "2024-07-18T12"]


def test_concurrent_ledger_writes_keep_every_hour(tmp_path):
    s = _settings(tmp_path)
    hours = [parse_hour("2024-07-18T00") + timedelta(hours=i) for i in range(16)]
    threads = [threading.Thread(target=record_processed, args=(s, VENUE, "BTCUSDT", h, {"x": [i, i]}))
               for i, h in enumerate(hours)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ledger = processed_hours(s)
    assert sorted(ledger) == [f"binance-futures/BTCUSDT/2024-07-18T{i:02d}" for i in range(16)]
    assert ledger["binance-futures/BTCUSDT/2024-07-18T07"]["raw_files"] == {"x": [7, 7]}
    assert [p.name for p in state_dir(s).iterdir() if p.name.endswith(".tmp")] == []


def test_damaged_ledger_starts_over_with_a_warning(tmp_path, caplog):
    s = _settings(tmp_path)
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T10", skew_us=1_000_000)
    state_dir(s).mkdir(parents=True)
    (state_dir(s) / "processed.json").write_bytes(b'{"version": 1, "hours": {')
    with caplog.at_level(logging.WARNING, logger="midas.scheduling"):
        assert pending_hours(s, now=_at("2024-07-18T12:00:00")) == [
            HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-18T10"))]
    assert any("state file unreadable" in r.getMessage() and "processed.json" in r.getMessage()
               for r in caplog.records)


def test_backfill_range_ignores_the_ledger_and_reports_waiting_hours(tmp_path):
    s = _settings(tmp_path)
    for h in ("2024-07-18T10", "2024-07-18T11", "2024-07-18T12"):
        _write_local_hour(tmp_path, "BTCUSDT", h, skew_us=1_000_000)
    h11 = parse_hour("2024-07-18T11")
    record_processed(s, VENUE, "BTCUSDT", h11, hour_fingerprint(s, VENUE, "BTCUSDT", h11))
    ready, waiting = ready_hours(s, "2024-07-18T11", "2024-07-18T13", now=_at("2024-07-18T13:01:30"))
    assert ready == [HourKey(VENUE, "BTCUSDT", h11), HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-18T12"))]
    assert [(format(w.hour, "%H"), w.reason) for w in waiting] == [("13", "the hour has not closed yet")]


def test_symbol_that_cannot_be_a_path_is_refused(tmp_path):
    s = _settings(tmp_path)
    with pytest.raises(Exception, match="symbol '../x' is not allowed"):
        hour_statuses(s, symbols=["../x"])


def _process_all(s, now):
    for key in pending_hours(s, now=now):
        record_processed(s, key.venue, key.symbol, key.hour,
                         hour_fingerprint(s, key.venue, key.symbol, key.hour))


def test_hours_whose_features_read_a_reprocessed_hour_are_stale(tmp_path):
    s = _settings(tmp_path)
    for h in ("2024-07-18T21", "2024-07-18T22", "2024-07-18T23", "2024-07-19T00", "2024-07-19T01"):
        _write_local_hour(tmp_path, "BTCUSDT", h, skew_us=0)
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-20T00", skew_us=0)
    now = _at("2024-07-21T00:00:00")
    _process_all(s, now)
    assert pending_hours(s, now=now) == []
    # Late data for 22:00: the rest of the 18th (ofi_cumulative) is stale, the 19th is not.
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T22", skew_us=0, part=1, step_us=1800 * SEC)
    states = {format(st.hour, "%dT%H"): (st.state, st.reason) for st in hour_statuses(s, now=now)}
    assert states == {
        "18T21": ("processed", states["18T21"][1]),
        "18T22": ("changed", "raw files changed since it was processed"),
        "18T23": ("stale", "its features read hour 2024-07-18T22, which is pending"),
        "19T00": ("processed", states["19T00"][1]),
        "19T01": ("processed", states["19T01"][1]),
        "20T00": ("processed", states["20T00"][1]),
    }
    _process_all(s, now)
    assert pending_hours(s, now=now) == []
    # Reprocessing from the same raw files (a backfill) changes no book: nothing becomes stale.
    h23 = parse_hour("2024-07-18T23")
    record_processed(s, VENUE, "BTCUSDT", h23, hour_fingerprint(s, VENUE, "BTCUSDT", h23))
    assert pending_hours(s, now=now) == []
    # New raw data for 23:00, processed alone: the whole next day is stale (its first ofi reads
    # 23:59:59.9), the day after is not.
    _write_local_hour(tmp_path, "BTCUSDT", "2024-07-18T23", skew_us=0, part=1, step_us=1800 * SEC)
    record_processed(s, VENUE, "BTCUSDT", h23, hour_fingerprint(s, VENUE, "BTCUSDT", h23))
    assert pending_hours(s, now=now) == [HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-19T00")),
                                         HourKey(VENUE, "BTCUSDT", parse_hour("2024-07-19T01"))]
    reasons = {format(st.hour, "%dT%H"): st.reason for st in hour_statuses(s, now=now)}
    assert reasons["19T01"] == "its features read hour 2024-07-18T23, rebuilt after it"
    _process_all(s, now)
    assert pending_hours(s, now=now) == []


def test_which_hour_job_errors_are_worth_retrying():
    from midas.errors import (CatalogError, CatalogLockedError, ConfigError, DataError, LayoutError,
                              RawFileError)
    from midas.scheduling import worth_retrying

    errors = [CatalogLockedError("locked"), OSError("disk"), RuntimeError("?"), RawFileError("f"),
              CatalogError("cannot open"), DataError("bad"), LayoutError("path"), ConfigError("cfg")]
    assert [worth_retrying(e) for e in errors] == [True, True, True, True, False, False, False, False]
