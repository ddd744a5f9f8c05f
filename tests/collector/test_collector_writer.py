"""Per-symbol raw files: naming, rotation by time and size, snapshot first, .partial, write errors."""

from __future__ import annotations

import errno
from datetime import datetime, timezone

import pytest

from midas import wire
from midas.collector.writer import SymbolFiles, local_hour, next_part, next_rotation_time
from midas.errors import CollectorError
from midas.layout import list_raw_files, raw_file_path
from midas.raw import RawFileWriter, read_raw_records

VENUE = "binance-futures"
T0 = datetime(2024, 7, 18, 23, 59, 50, tzinfo=timezone.utc).timestamp()


class Wall:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def _snap(lid, ts):
    return {"type": "snapshot", "venue": VENUE, "symbol": "BTCUSDT", "exchange_ts": ts, "local_ts": ts,
            "last_update_id": lid, "bids": [["1.0", "1"]], "asks": [["2.0", "1"]],
            "transaction_ts": ts, "depth_limit": 1000}


def _trade(tid, ts):
    return {"type": "trade", "venue": VENUE, "symbol": "BTCUSDT", "exchange_ts": ts, "local_ts": ts,
            "trade_id": tid, "price": "1.5", "qty": "0.010", "is_buyer_maker": False, "trade_ts": ts,
            "trade_type": "MARKET"}


def test_rotation_times_are_multiples_of_the_period():
    assert next_rotation_time(T0, 18.0) == 1721347200.0          # 23:59:50 -> 00:00:00, 18 s grid
    assert next_rotation_time(100.0, 18.0) == 108.0
    assert next_rotation_time(108.0, 18.0) == 126.0
    assert next_rotation_time(T0, 3600.0) == datetime(2024, 7, 19, 0, tzinfo=timezone.utc).timestamp()
    assert local_hour(T0) == datetime(2024, 7, 18, 23, tzinfo=timezone.utc)


def test_files_rotate_by_time_across_midnight_with_snapshot_first(tmp_path):
    wall = Wall(T0)
    files = SymbolFiles(tmp_path, VENUE, "BTCUSDT", rotation_hours=0.005, rotation_gb=1, wall_clock=wall,
                        fsync=False)
    files.write(_trade(1, 10))                       # before the first snapshot: held
    files.flush()                                    # (compressed into a frame in memory)
    assert len(files.startup_frames) == 1
    files.event("connected", "connection 1", 11)
    assert not files.has_file and list(tmp_path.rglob("*")) == []
    salvaged = wire.event_record(VENUE, "BTCUSDT", "salvaged", "salvaged 3 records", 12)
    first = files.open_with_snapshot(_snap(100, 13), "start", [salvaged])
    assert first == raw_file_path(tmp_path, VENUE, "BTCUSDT", local_hour(T0), 0)
    assert files.rotate_at == next_rotation_time(T0, 18.0)
    files.write(_trade(2, 14))
    files.flush()
    assert first.with_name(first.name + ".partial").exists() and not first.exists()
    assert files.rotation_due() is None
    wall.t = files.rotate_at
    assert files.rotation_due() == "time"
    wall.t = datetime(2024, 7, 19, 0, 0, 2, tzinfo=timezone.utc).timestamp()
    second = files.open_with_snapshot(_snap(200, 20), "time")
    files.write(_trade(3, 21))
    wall.t += 18
    third = files.open_with_snapshot(_snap(300, 30), "time")
    files.close("collector stopped")
    assert second.name == "BTCUSDT_20240719T00_0.jsonl.zst"
    assert third.name == "BTCUSDT_20240719T00_1.jsonl.zst"
    assert second.parent.name == "2024-07-19" and first.parent.name == "2024-07-18"
    assert list_raw_files(tmp_path, VENUE, "BTCUSDT") == [first, second, third]
    assert list_raw_files(tmp_path, VENUE, "BTCUSDT", partial=True) == []
    r1, r2, r3 = (read_raw_records(p) for p in (first, second, third))
    assert [r["type"] for r in r1] == ["snapshot", "event", "trade", "event", "trade", "event"]
    assert [r.get("event") for r in r1 if r["type"] == "event"] == ["salvaged", "connected", "rotated"]
    assert [r["trade_id"] for r in r1 if r["type"] == "trade"] == [1, 2]
    assert r1[-1]["detail"] == "time: continues in BTCUSDT_20240719T00_0.jsonl.zst"
    assert [r["type"] for r in r2] == ["snapshot", "trade", "event"]
    assert r2[0]["last_update_id"] == 200
    assert r2[-1]["detail"] == "time: continues in BTCUSDT_20240719T00_1.jsonl.zst"
    assert [(r["type"], r.get("event")) for r in r3] == [("snapshot", None), ("event", "shutdown")]
    assert r3[1]["detail"] == "collector stopped"
    assert files.closed_files == [first, second, third]
    assert files.records_written == 11


def test_size_rotation_and_part_numbers_continue_after_existing_files(tmp_path):
    wall = Wall(T0)
    hour = local_hour(T0)
    # Files of an earlier run in the same hour: the next part continues after them.
    old = RawFileWriter(raw_file_path(tmp_path, VENUE, "BTCUSDT", hour, 0), fsync=False)
    old.write(_snap(1, 1))
    old.close()
    stray = RawFileWriter(raw_file_path(tmp_path, VENUE, "BTCUSDT", hour, 1), fsync=False)
    stray.write(_snap(1, 1))
    stray.flush()
    stray.abort()                                      # a .partial (crash) holds part 1
    assert next_part(tmp_path, VENUE, "BTCUSDT", hour) == 2
    files = SymbolFiles(tmp_path, VENUE, "BTCUSDT", rotation_hours=1, rotation_gb=1500 / (1 << 30),
                        wall_clock=wall, fsync=False)
    assert files.max_bytes == 1500
    p2 = files.open_with_snapshot(_snap(10, 10), "start")
    assert p2.name == "BTCUSDT_20240718T23_2.jsonl.zst"
    tid = 0
    while files.rotation_due() is None:
        for _ in range(20):
            tid += 1
            files.write(_trade(tid, 100 + tid))
        files.flush()
    assert files.rotation_due() == "size"
    p3 = files.open_with_snapshot(_snap(20, 5000), "size")
    files.write(_trade(tid + 1, 6000))
    files.close("done")
    assert p3.name == "BTCUSDT_20240718T23_3.jsonl.zst"
    recs = read_raw_records(p2)
    assert recs[0]["type"] == "snapshot"
    assert [r["trade_id"] for r in recs if r["type"] == "trade"] == list(range(1, tid + 1))
    assert recs[-1]["detail"] == "size: continues in BTCUSDT_20240718T23_3.jsonl.zst"
    assert p2.stat().st_size >= 1500


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


def test_disk_full_stops_with_a_clear_message_and_closed_files_stay_valid(tmp_path):
    wall = Wall(T0)
    files = SymbolFiles(tmp_path, VENUE, "BTCUSDT", rotation_hours=1, rotation_gb=1, wall_clock=wall,
                        fsync=False)
    first = files.open_with_snapshot(_snap(1, 1), "start")
    files.write(_trade(1, 2))
    wall.t += 3600
    second = files.open_with_snapshot(_snap(2, 3), "time")
    files.write(_trade(2, 4))
    files.flush()
    files.write(_trade(3, 5))
    files.current._fh = FullDisk(files.current._fh)
    with pytest.raises(CollectorError) as err:
        files.flush()
    partial = second.with_name(second.name + ".partial")
    assert str(err.value).startswith(f"cannot write raw file {partial}: the disk is full (ENOSPC)")
    assert files.close("stopped") is None              # never finalize a file that failed
    assert partial.exists() and not second.exists()
    assert [r["type"] for r in read_raw_records(first)] == ["snapshot", "trade", "event"]
    # What was flushed before the error survives in the .partial (salvaged at the next start).
    assert [r.get("trade_id") for r in read_raw_records(partial)] == [None, 2]
