"""The hourly and backfill flows under a real Prefect test server, on the real futures recording
(imported into raw files), with the real rebuild, features and DuckDB catalog."""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
import threading
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from flows.backfill import backfill
from flows.hourly import hourly
from midas.catalog import run_query
from midas.config import load_settings
from midas.importer import import_recording
from midas.layout import partition_file, parse_hour
from midas.scheduling import pending_hours, processed_hours

VENUE = "binance-futures"
HOURS = ["2024-07-18T23", "2024-07-19T00"]


def _trade_oracle(recording: Path) -> dict[str, int]:
    """Distinct trade ids per exchange hour (trade time T), read straight from the recording."""
    seen: dict[str, set[int]] = defaultdict(set)
    with gzip.open(recording, "rb") as fh:
        for line in fh:
            data = orjson.loads(line.split(b" ", 1)[1]).get("data", {})
            if data.get("e") == "trade":
                hour = datetime.fromtimestamp(data["T"] // 3_600_000 * 3600, tz=timezone.utc)
                seen[f"{hour:%Y-%m-%dT%H}"].add(data["t"])
    return {h: len(ids) for h, ids in seen.items()}


def _parquet_rows(data_dir: Path, dataset: str, hour: str) -> int:
    path = partition_file(data_dir, dataset, VENUE, "BTCUSDT", parse_hour(hour))
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


@pytest.fixture
def imported(tmp_path, recordings):
    import_recording(recordings[VENUE], VENUE, tmp_path)
    return tmp_path


def test_hourly_processes_every_pending_hour_once_then_nothing(prefect_harness, task_runs_of, logs_of,
                                                               imported, recordings):
    from prefect.artifacts import Artifact

    state = hourly(data_dir=str(imported), venue=VENUE, symbols=["BTCUSDT"], return_state=True)
    assert state.is_completed(), state.message
    rows = state.result()
    assert [(r["symbol"], r["hour"]) for r in rows] == [("BTCUSDT", h) for h in HOURS]

    # Each pending hour ran exactly once.
    task_runs_of(state.state_details.flow_run_id, {
        "find-pending-hours": ("COMPLETED", 1), "BTCUSDT 2024-07-18T23": ("COMPLETED", 1),
        "BTCUSDT 2024-07-19T00": ("COMPLETED", 1)})

    # Rows: the independent trade count, the Parquet files, the catalog and the summary agree.
    trades = _trade_oracle(recordings[VENUE])
    assert trades == {"2024-07-18T23": 974, "2024-07-19T00": 9727}
    settings = load_settings(env_file=None, data_dir=imported, venue=VENUE, symbols=["BTCUSDT"])
    _, catalog_rows = run_query(settings, "SELECT dataset, strftime(date, '%Y-%m-%d') || 'T' || "
                                          "lpad(hour::VARCHAR, 2, '0'), rows FROM partitions "
                                          "WHERE symbol = 'BTCUSDT' ORDER BY 1, 2")
    catalog = {(d, h): n for d, h, n in catalog_rows}
    for hour in HOURS:
        assert _parquet_rows(imported, "trades", hour) == trades[hour]
        for dataset in ("book", "trades", "features"):
            assert catalog[(dataset, hour)] == _parquet_rows(imported, dataset, hour) > 0
    ledger = processed_hours(settings)
    summary = {r["hour"]: r for r in rows}
    for hour in HOURS:
        entry = ledger[f"{VENUE}/BTCUSDT/{hour}"]
        assert entry["rows"]["trades"] == trades[hour]
        assert entry["rows"]["book"] == entry["rows"]["features"] == _parquet_rows(imported, "book", hour)
        assert summary[hour]["rows"] == ", ".join(f"{k}={v}" for k, v in sorted(entry["rows"].items()))
        assert summary[hour]["gaps"] == entry["gaps"]

    artifact = Artifact.get("midas-hourly-summary")
    table = orjson.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert [(r["symbol"], r["hour"], r["rows"], r["gaps"]) for r in table] == [
        (r["symbol"], r["hour"], r["rows"], r["gaps"]) for r in rows]
    # The pipeline's own midas.* log lines are in the run's logs too.
    lines = logs_of(state.state_details.flow_run_id,
                    until=lambda lines: sum(line.startswith("midas.scheduling hour processed")
                                            for line in lines) >= 2)
    assert [line.split(" hour=")[1].split()[0] for line in lines
            if line.startswith("midas.scheduling hour processed")] == HOURS

    # A second run finds nothing to do and runs no hour task.
    again = hourly(data_dir=str(imported), venue=VENUE, symbols=["BTCUSDT"], return_state=True)
    assert again.is_completed() and again.result() == []
    task_runs_of(again.state_details.flow_run_id, {"find-pending-hours": ("COMPLETED", 1)})
    assert pending_hours(settings) == []

    # A backfill of the range reprocesses both hours (idempotently: same rows) and leaves nothing pending.
    refilled = backfill(start="2024-07-18T20", end="2024-07-19T05", symbols=["BTCUSDT"],
                        data_dir=str(imported), venue=VENUE, return_state=True)
    assert refilled.is_completed()
    assert [(r["hour"], r["rows"]) for r in refilled.result()] == [(r["hour"], r["rows"]) for r in rows]
    progress = Artifact.get("midas-backfill-summary-progress")
    assert float(progress.data) == 100.0
    assert pending_hours(settings) == []


_HOLD_CATALOG = """
import duckdb, pathlib, sys, time
con = duckdb.connect(sys.argv[1])           # a writer: holds the catalog's file lock
pathlib.Path(sys.argv[2]).write_text("held")
while not pathlib.Path(sys.argv[3]).exists():
    time.sleep(0.05)
con.close()
"""


class _RetryWatcher(logging.Handler):
    """Sets `seen` when Prefect announces the first retry of a task that hit the locked catalog."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "CatalogLockedError" in message and "Retry 1/" in message:
            self.seen.set()


def test_locked_catalog_is_retried_and_succeeds(prefect_harness, task_runs_of, imported, tmp_path,
                                                monkeypatch):
    import midas.catalog

    # The real lock wait is 120 s; 1 s keeps the test short. The lock itself is a real DuckDB
    # writer in another process.
    monkeypatch.setitem(midas.catalog.register_hour.__kwdefaults__, "lock_timeout", 1.0)
    held, release = tmp_path / "held", tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_CATALOG,
                               str(imported / "midas.duckdb"), str(held), str(release)])
    watcher = _RetryWatcher()
    task_logger = logging.getLogger("prefect.task_runs")
    task_logger.addHandler(watcher)

    def release_after_first_failure() -> None:
        if watcher.seen.wait(timeout=150):
            release.write_text("go")

    releaser = threading.Thread(target=release_after_first_failure, daemon=True)
    try:
        deadline = 60
        while not held.exists() and deadline > 0 and holder.poll() is None:
            threading.Event().wait(0.1)
            deadline -= 0.1
        assert held.exists(), "the process holding the catalog did not start"
        releaser.start()
        state = hourly(data_dir=str(imported), venue=VENUE, symbols=["BTCUSDT"],
                       retry_delay_seconds=3.0, return_state=True)
    finally:
        task_logger.removeHandler(watcher)
        release.write_text("go")
        holder.wait(timeout=60)
    assert state.is_completed(), state.message
    assert [r["hour"] for r in state.result()] == HOURS
    # Hour 23 hit the locked catalog once and succeeded on its retry; hour 00 ran once.
    task_runs_of(state.state_details.flow_run_id, {
        "find-pending-hours": ("COMPLETED", 1), "BTCUSDT 2024-07-18T23": ("COMPLETED", 2),
        "BTCUSDT 2024-07-19T00": ("COMPLETED", 1)})
    settings = load_settings(env_file=None, data_dir=imported, venue=VENUE, symbols=["BTCUSDT"])
    assert pending_hours(settings) == []
    _, rows = run_query(settings, "SELECT count(*) FROM partitions WHERE dataset = 'book'")
    assert rows == [(2,)]


def test_permanent_failure_is_not_retried_and_holds_back_the_later_hours(prefect_harness, task_runs_of,
                                                                          imported):
    from prefect.artifacts import Artifact

    # A directory where the catalog file belongs: the catalog cannot be opened at all (CatalogError,
    # not a lock), which retrying cannot fix.
    (imported / "midas.duckdb").mkdir()
    state = hourly(data_dir=str(imported), venue=VENUE, symbols=["BTCUSDT"], retry_delay_seconds=1.0,
                   return_state=True)
    assert state.is_failed()
    assert state.message.startswith("Flow run encountered an exception: RuntimeError: hourly: 2 "
                                    "symbol-hours failed and stay pending: BTCUSDT 2024-07-18T23 (")
    assert "BTCUSDT 2024-07-19T00 (not run: an earlier hour of BTCUSDT failed)" in state.message
    # Hour 23 failed on its only run (no retry); hour 00 never ran.
    task_runs_of(state.state_details.flow_run_id, {
        "find-pending-hours": ("COMPLETED", 1), "BTCUSDT 2024-07-18T23": ("FAILED", 1),
        "BTCUSDT 2024-07-19T00": ("PENDING", 0)})
    table = Artifact.get("midas-hourly-summary").data
    table = orjson.loads(table) if isinstance(table, str) else table
    assert [(r["hour"], r["rows"].split(":")[0]) for r in table] == [(h, "FAILED") for h in HOURS]
    assert "cannot open the catalog" in table[0]["rows"]
    settings = load_settings(env_file=None, data_dir=imported, venue=VENUE, symbols=["BTCUSDT"])
    assert [format(k.hour, "%Y-%m-%dT%H") for k in pending_hours(settings)] == HOURS
