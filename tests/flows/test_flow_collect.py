"""The collection flow under a real Prefect test server against the local exchange: a collector
killed with SIGKILL is restarted by Prefect (a task retry), and the raw files stay valid."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from flows.collect import collect
from midas.exchange import LocalExchange, read_truth_trades
from midas.layout import list_raw_files
from midas.raw import RawFileReader
from midas.supervisor import pid_file

VENUE = "binance-futures"
RECORD_TYPES = {"depth", "trade", "snapshot", "book_ticker", "event"}


class _HealthWatcher(logging.Handler):
    """Counts the health lines the flow's task logs."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("collector health "):
            self.count += 1


def _wait_for(condition, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _pid(path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def test_collect_flow_restarts_a_killed_collector(prefect_harness, task_runs_of, logs_of, tmp_path):
    data_dir, truth_dir = tmp_path / "data", tmp_path / "truth"
    watcher = _HealthWatcher()
    task_logger = logging.getLogger("prefect.task_runs")
    task_logger.addHandler(watcher)
    outcome: dict = {}
    try:
        with LocalExchange(venue=VENUE, symbols=["BTCUSDT"], seed=7, truth_dir=truth_dir, port=0) as ex:
            def run_flow() -> None:
                outcome["state"] = collect(
                    duration_seconds=13, symbols=["BTCUSDT"], data_dir=str(data_dir), venue=VENUE,
                    ws_url=ex.ws_url, rest_url=ex.rest_url, restarts=3, restart_delay_seconds=1,
                    health_interval_secs=1, return_state=True)

            runner = threading.Thread(target=run_flow)
            runner.start()
            pid_file_path = pid_file_for(data_dir)
            # The first collector is running: it reported its health and flushed records.
            _wait_for(lambda: watcher.count >= 1, "the first health report")
            partial = _wait_for(lambda: list_raw_files(data_dir, VENUE, "BTCUSDT", partial=True),
                                "a .partial raw file")[0]
            _wait_for(lambda: sum(1 for _ in RawFileReader(partial).iter_lines()) >= 20,
                      "20 records flushed to the .partial file")
            first = _pid(pid_file_path)
            os.kill(first, signal.SIGKILL)
            second = _wait_for(lambda: (p := _pid(pid_file_path)) not in (None, first) and p, "a new collector")
            runner.join(timeout=180)
            assert not runner.is_alive(), "the collection flow did not end"
    finally:
        task_logger.removeHandler(watcher)

    state = outcome["state"]
    assert state.is_completed(), state.message
    run = state.result()
    assert (run.pid, run.exit_code) == (second, 0)
    # One task run, completed on its second run: the first ended with the SIGKILL.
    task_runs_of(state.state_details.flow_run_id, {"run-collector": ("COMPLETED", 2)})

    logs = logs_of(state.state_details.flow_run_id,
                   until=lambda lines: any(line.startswith("midas.collector salvaged") for line in lines))
    assert any(f"collector process {first} was killed by signal 9 (SIGKILL)" in line for line in logs)
    assert any(line.startswith("prefect.task_runs collector health ") for line in logs)
    # The restarted collector's own log line (a midas.* logger) reached the flow run's logs.
    assert any(line.startswith("midas.collector salvaged a .partial raw file left by a crash")
               for line in logs)

    # Raw files stay valid: nothing left .partial, every file reads without a problem, the killed
    # collector's file kept its records, and every trade is one the exchange made, unchanged.
    assert list_raw_files(data_dir, VENUE, "BTCUSDT", partial=True) == []
    files = list_raw_files(data_dir, VENUE, "BTCUSDT")
    salvaged_name = partial.name.removesuffix(".partial")
    assert salvaged_name in [f.name for f in files] and len(files) >= 2
    truth = {t["trade_id"]: t for t in read_truth_trades(truth_dir, "BTCUSDT")}
    trades = 0
    events = []
    for path in files:
        reader = RawFileReader(path)
        records = [rec for _, rec in reader.iter_records()]
        assert reader.problems == [], path
        assert records and {r["type"] for r in records} <= RECORD_TYPES, path
        for rec in records:
            if rec["type"] == "trade":
                expected = truth[rec["trade_id"]]
                assert (rec["price"], rec["qty"], rec["is_buyer_maker"]) == (
                    expected["price"], expected["qty"], expected["is_buyer_maker"])
                trades += 1
            elif rec["type"] == "event":
                events.append((path.name, rec["event"]))
        if path.name == salvaged_name:
            assert len(records) >= 20
    assert trades > 0
    # The restarted collector recorded the salvage once, in its own first file.
    salvage_events = [name for name, event in events if event == "salvaged"]
    assert len(salvage_events) == 1 and salvage_events[0] != salvaged_name


def pid_file_for(data_dir):
    from midas.config import load_settings

    return pid_file(load_settings(env_file=None, data_dir=data_dir, venue=VENUE))
