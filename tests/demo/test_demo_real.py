"""`midas demo --real` end to end (slow: both recordings replayed through `midas exchange --replay`).

The oracle is the recordings themselves: the collector must capture every recorded depth diff and
trade, and the batch stages must produce exactly the recorded trades (ids without gaps, README of
shared/data/binance) and a book for every venue."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import pytest


@pytest.mark.slow
def test_demo_real_replays_both_recordings(tmp_path):
    data_dir = tmp_path / "demo-real"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               COLUMNS="150")
    proc = subprocess.run([sys.executable, "-m", "midas.cli", "demo", "--real", "--speed", "60", "--data-dir",
                           str(data_dir)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, f"stdout:\n{out[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert "captured 9,022 of 9,022 recorded depth diffs and 10,701 of 10,701 trades" in out
    assert "captured 6,495 of 6,495 recorded depth diffs and 19,904 of 19,904 trades" in out
    con = duckdb.connect(str(data_dir / "midas.duckdb"), read_only=True)
    try:
        trades = con.execute("SELECT venue, count(*), count(DISTINCT trade_id), max(trade_id) - min(trade_id) + 1 "
                             "FROM trades GROUP BY venue ORDER BY venue").fetchall()
        books = con.execute("SELECT venue, count(*) FROM features GROUP BY venue ORDER BY venue").fetchall()
    finally:
        con.close()
    assert trades == [("binance", 19904, 19904, 19904), ("binance-futures", 10701, 10701, 10701)]
    assert [v for v, _ in books] == ["binance", "binance-futures"] and all(n > 4000 for _, n in books)
    for venue in ("binance", "binance-futures"):
        assert list((data_dir / "charts" / venue).glob("BTCUSDT_*.png"))
