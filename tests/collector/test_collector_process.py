"""`midas collect` as a process: SIGKILL mid-writing then restart salvages every flushed record;
SIGTERM finalizes every file (no `.partial` left) within 5 s; --duration stops by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import zstandard

from midas.exchange import LocalExchange
from midas.layout import list_raw_files
from midas.raw import RawFileReader

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
VENUE = "binance-futures"


def _start(ex, data_dir, *extra, **env_extra):
    env = {k: v for k, v in os.environ.items()}
    env.update(FLUSH_INTERVAL_SECS="0.2", RECONNECT_DELAY_SECS="0.2", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.update(env_extra)
    cmd = [sys.executable, "-m", "midas.cli", "collect", "--venue", VENUE, "--symbols", ",".join(SYMBOLS),
           "--data-dir", str(data_dir), "--ws-url", ex.ws_url, "--rest-url", ex.rest_url, *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _partials(data_dir):
    return [p for s in SYMBOLS for p in list_raw_files(data_dir, VENUE, s, partial=True)]


def _lines(path):
    reader = RawFileReader(path)
    return [line for _, line in reader.iter_lines()], reader


def test_sigkill_then_restart_salvages_every_flushed_record(tmp_path, coll):
    data = tmp_path / "data"
    with LocalExchange(venue=VENUE, symbols=SYMBOLS, seed=3, truth_dir=tmp_path / "truth") as ex:
        proc = _start(ex, data)
        try:
            _wait(lambda: len(_partials(data)) == 2 and all(len(_lines(p)[0]) >= 20 for p in _partials(data)),
                  60, "both .partial files to hold 20 flushed records")
        finally:
            proc.kill()
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        before = {}
        for p in _partials(data):
            lines, reader = _lines(p)
            assert reader.problems == []
            before[p] = lines
        # A kill in the middle of a write leaves half a frame: make that happen for one file.
        torn = sorted(before)[0]
        half = zstandard.ZstdCompressor().compress(b'{"type":"trade"}\n' * 50)
        with open(torn, "ab") as fh:
            fh.write(half[: len(half) // 2])
        proc = _start(ex, data, "--duration", "2")
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
    assert _partials(data) == []
    for partial, lines in before.items():
        final = partial.with_name(partial.name.removesuffix(".partial"))
        after, reader = _lines(final)
        assert after == lines                      # every flushed record, nothing else
        assert reader.problems == []
        assert lines[0].startswith(b'{"type":"snapshot"')
    for s in SYMBOLS:
        files = list_raw_files(data, VENUE, s)
        assert len(files) == 2
        recs = coll.file_records(files[1])
        assert recs[0]["type"] == "snapshot"
        assert recs[1]["type"] == "event" and recs[1]["event"] == "salvaged"
        old = [p for p in before if p.name.startswith(s)][0]
        assert recs[1]["detail"].startswith(f"salvaged {len(before[old])} records from {old.name}: ")
        if old == torn:
            assert "torn last zstd frame" in recs[1]["detail"]
        else:
            assert recs[1]["detail"].endswith("nothing dropped")
    # What was salvaged is exactly what the exchange sent on the first connection, in order.
    sent = coll.sent_records(tmp_path / "truth", VENUE)
    for s in SYMBOLS:
        old = [p for p in before if p.name.startswith(s)][0]
        got = coll.data_records(coll.file_records(old.with_name(old.name.removesuffix(".partial"))))
        first_conn = coll.first_connections(sent, s)     # per kind: its socket's first connection
        for kind, recs in coll.per_stream(got).items():
            assert [coll.strip_local(r) for r in recs] == [coll.strip_local(r) for r in first_conn[kind][:len(recs)]]
        assert len(got) >= 15


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_finalize_every_file_within_5_seconds(tmp_path, coll, sig):
    data = tmp_path / "data"
    with LocalExchange(venue=VENUE, symbols=SYMBOLS, seed=4, truth_dir=tmp_path / "truth") as ex:
        proc = _start(ex, data, LOG_DIR=str(tmp_path / "logs"))
        try:
            _wait(lambda: len(_partials(data)) == 2 and all(len(_lines(p)[0]) >= 10 for p in _partials(data)),
                  60, "both .partial files to hold 10 flushed records")
            sent_at = time.monotonic()
            proc.send_signal(sig)
            out, _ = proc.communicate(timeout=30)
            took = time.monotonic() - sent_at
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, out
    assert took < 5.0, took
    assert f"signal received, finalizing files signal={sig.name}" in out
    log_file = (tmp_path / "logs" / "collector" / "collector.log").read_text()
    assert "collector starting venue=binance-futures symbols=2 connections=1" in log_file
    assert f"signal received, finalizing files signal={sig.name}" in log_file
    assert _partials(data) == []
    assert list(data.rglob("*.partial")) == []
    sent = coll.sent_records(tmp_path / "truth", VENUE)
    for s in SYMBOLS:
        files = list_raw_files(data, VENUE, s)
        assert len(files) == 1
        recs = coll.file_records(files[0])
        assert recs[0]["type"] == "snapshot"
        assert recs[-1]["type"] == "event" and recs[-1]["event"] == "shutdown"
        lost = coll.match_connection_prefixes(coll.data_records(recs), sent, s)
        assert sorted(lost) == [1, 2]        # the /public and the /market socket of one connection


def test_sigterm_during_a_hanging_snapshot_request_still_exits_within_5_seconds(tmp_path, coll):
    from midas.exchange import Faults

    data = tmp_path / "data"
    # Every snapshot answer takes 7 s: the collector holds what it receives, waiting for one.
    # A REST thread the process had to wait for would make the exit take more than 5 s.
    faults = Faults(rest_slow_secs=7, rest_slow_rate=1.0)
    with LocalExchange(venue=VENUE, symbols=SYMBOLS, seed=4, faults=faults) as ex:
        proc = _start(ex, data)
        try:
            _wait(lambda: ex.stats()["rest_requests"] >= 2, 60, "both snapshot requests to hang")
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
            took = time.monotonic() - sent_at
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, out
    assert took < 5.0, took
    for s in SYMBOLS:
        files = list_raw_files(data, VENUE, s)
        assert len(files) == 1
        recs = coll.file_records(files[0])
        assert recs[0]["type"] == "event" and recs[0]["event"] == "connected"
        assert recs[-1]["detail"] == "collector stopped; no snapshot arrived before the end, this file has none"
    assert list(data.rglob("*.partial")) == []
