"""Several processes at once on one catalog file: concurrent registrations both succeed, queries
run while registrations happen, and a catalog held too long gives CatalogLockedError."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from midas.catalog import register_hour, run_query
from midas.config import load_settings
from midas.errors import CatalogLockedError

FUT = "binance-futures"
SYM = "BTCUSDT"
HOURS = ["2024-07-18T10", "2024-07-18T11"]
TIMEOUT = 120

# A process that waits for the go file, then registers its hour several times (or queries in a
# loop until the stop file appears) and prints what it did.
WORKER = r"""
import sys, time
from pathlib import Path
from midas.catalog import register_hour, run_query
from midas.config import load_settings
data_dir, mode, hour, go, stop = sys.argv[1:6]
s = load_settings(env_file=None, data_dir=data_dir, symbols=["BTCUSDT"], venue="binance-futures")
while not Path(go).exists():
    time.sleep(0.005)
if mode == "register":
    for _ in range(5):
        register_hour(s, "binance-futures", "BTCUSDT", hour, lock_timeout=100)
    print("registered", hour)
else:
    queries = 0
    while not Path(stop).exists() or queries == 0:
        run_query(s, "SELECT count(*) FROM partitions", timeout=100)
        queries += 1
    print("queries", queries)
"""

HOLDER = r"""
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
con.close()
print("released", flush=True)
"""


def _spawn(code: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_two_processes_register_at_the_same_moment_while_a_query_runs(tmp_path, clean):
    s = load_settings(env_file=None, data_dir=tmp_path, symbols=[SYM], venue=FUT)
    for hour in HOURS:
        clean.write(tmp_path, "book", FUT, SYM, hour, clean.book_table(
            [{"ts": clean.t(hour, 0), "bids": [(100.0, 1.0)], "asks": [(100.5, 1.0)]}]))
    register_hour(s, FUT, SYM, "2024-07-18T09")          # the catalog exists for the querier
    go, stop = tmp_path / "go", tmp_path / "stop"
    querier = _spawn(WORKER, str(tmp_path), "query", "-", str(go), str(stop))
    writers = [_spawn(WORKER, str(tmp_path), "register", hour, str(go), str(stop)) for hour in HOURS]
    go.touch()
    outputs = []
    for proc in writers:
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    stop.touch()
    q_out, q_err = querier.communicate(timeout=TIMEOUT)
    assert querier.returncode == 0, q_err
    assert outputs == [f"registered {h}" for h in HOURS]
    assert q_out.startswith("queries ") and int(q_out.split()[1]) >= 1
    assert run_query(s, "SELECT dataset, hour, rows FROM partitions ORDER BY hour")[1] == [
        ("book", 10, 1), ("book", 11, 1)]


def test_catalog_held_too_long_is_a_clear_error_then_registration_waits_for_it(tmp_path, clean):
    s = load_settings(env_file=None, data_dir=tmp_path, symbols=[SYM], venue=FUT)
    register_hour(s, FUT, SYM, HOURS[0])
    holder = _spawn(HOLDER, str(s.catalog_path), stdin=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(CatalogLockedError, match=r"midas.duckdb: another process held the catalog "
                                                     r"for more than 0.2 s, so it could not be opened to write"):
            register_hour(s, FUT, SYM, HOURS[0], lock_timeout=0.2)
        with pytest.raises(CatalogLockedError, match="could not be opened to read"):
            run_query(s, "SELECT 1", timeout=0.2)
        clean.write(tmp_path, "book", FUT, SYM, HOURS[0], clean.book_table(
            [{"ts": clean.t(HOURS[0], 0), "bids": [(100.0, 1.0)], "asks": [(100.5, 1.0)]}]))
        outcome: dict = {}
        waiting = threading.Thread(target=lambda: outcome.update(
            result=register_hour(s, FUT, SYM, HOURS[0], lock_timeout=TIMEOUT)))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()          # it cannot finish while the holder has the file
        holder.stdin.write("\n")
        holder.stdin.flush()
        waiting.join(TIMEOUT)
        assert not waiting.is_alive()
        assert outcome["result"].partitions == 1
        assert holder.stdout.readline().strip() == "released"
    finally:
        holder.kill()
        holder.wait(TIMEOUT)
    assert run_query(s, "SELECT dataset, rows FROM partitions")[1] == [("book", 1)]


def test_threads_of_one_process_register_and_query_at_the_same_moment(tmp_path, clean):
    # The hourly flow runs tasks as threads: DuckDB refuses a read-only and a read-write connection
    # to one file inside one process, and two writers conflict, unless they take turns.
    s = load_settings(env_file=None, data_dir=tmp_path, symbols=[SYM], venue=FUT)
    hours = [f"2024-07-18T{h:02d}" for h in range(12, 18)]
    for hour in hours:
        clean.write(tmp_path, "book", FUT, SYM, hour, clean.book_table(
            [{"ts": clean.t(hour, 0), "bids": [(100.0, 1.0)], "asks": [(100.5, 1.0)]}]))
    register_hour(s, FUT, SYM, hours[0])        # the catalog exists for the querying thread
    barrier = threading.Barrier(len(hours) + 1)
    errors: list[BaseException] = []

    def register(hour):
        barrier.wait()
        try:
            register_hour(s, FUT, SYM, hour, lock_timeout=TIMEOUT)
        except BaseException as e:      # collected and asserted below
            errors.append(e)

    def query():
        barrier.wait()
        try:
            for _ in range(5):
                run_query(s, "SELECT count(*) FROM partitions", timeout=TIMEOUT)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=register, args=(h,)) for h in hours] + [threading.Thread(target=query)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert errors == []
    assert run_query(s, "SELECT hour, rows FROM partitions ORDER BY hour")[1] == [(h, 1) for h in range(12, 18)]
