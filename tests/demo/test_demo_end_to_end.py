"""`midas demo` end to end: a real `midas exchange` subprocess, the Prefect collection flow (a real
temporary Prefect server), the processing flow, the catalog, queries and charts, ~20 s of collection.

Checked independently of the demo's own summary: the raw files are re-read here, the partitions
read with pyarrow, the catalog queried with DuckDB, the faults the demo injects (one sequence gap,
one disconnect) must appear as exactly those gaps for each symbol, and every book row of the
features must equal the exchange's ground truth (its true book at that grid time, 10 levels a side).
"""

from __future__ import annotations

import csv
import io
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from midas.exchange import read_truth_book, read_truth_trades
from midas.layout import list_raw_files
from midas.raw import read_raw_records

SYMBOLS = ("BTCUSDT", "ETHUSDT")
VENUE = "binance-futures"


def test_demo_short_run(tmp_path, repo_root):
    data_dir = tmp_path / "demo-data"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1", COLUMNS="150")
    truth_dir = tmp_path / "truth"
    proc = subprocess.run([sys.executable, "-m", "midas.cli", "demo", "--seconds", "20", "--data-dir",
                           str(data_dir), "--truth-dir", str(truth_dir)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    out = proc.stdout
    assert proc.returncode == 0, f"stdout:\n{out[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"

    # the summary was printed, with the figures of the files on disk
    records = {s: [r for p in list_raw_files(data_dir, VENUE, s) for r in read_raw_records(p)] for s in SYMBOLS}
    total = sum(len(r) for r in records.values())
    assert total > 200
    assert "MIDAS demo summary: binance-futures BTCUSDT, ETHUSDT" in out
    assert "│ messages recorded        │" in out and f" {total:,} (" in out
    assert "throughput per stage" in out and "features size / raw size" in out

    # every raw file is final and starts with a snapshot (SPEC §2)
    for symbol in SYMBOLS:
        assert not list_raw_files(data_dir, VENUE, symbol, partial=True)
        for path in list_raw_files(data_dir, VENUE, symbol):
            assert read_raw_records(path)[0]["type"] == "snapshot", path

    # the injected faults: one sequence gap and one disconnect per symbol, seen by the collector...
    for symbol, recs in records.items():
        events = Counter(r["event"] for r in recs if r["type"] == "event")
        assert events["gap"] == 1 and events["disconnected"] == 2, (symbol, events)   # the drop + the stop
        assert events["connected"] == 2, (symbol, events)
    # ... and in the gaps dataset
    gaps = duckdb.sql(f"SELECT symbol, reason, count(*) FROM read_parquet('{data_dir}/clean/gaps/**/*.parquet', "
                      "hive_partitioning = true) WHERE reason <> 'no_snapshot' GROUP BY ALL ORDER BY ALL").fetchall()
    assert gaps == [("BTCUSDT", "disconnected", 1), ("BTCUSDT", "sequence_gap", 1),
                    ("ETHUSDT", "disconnected", 1), ("ETHUSDT", "sequence_gap", 1)]

    # features: non-empty, one row per book row, and registered in the catalog
    for symbol in SYMBOLS:
        features = sorted((data_dir / "features" / f"venue={VENUE}" / f"symbol={symbol}").glob("*/*/part-0.parquet"))
        books = sorted((data_dir / "clean" / "book" / f"venue={VENUE}" / f"symbol={symbol}").glob("*/*/part-0.parquet"))
        assert features and len(features) == len(books)
        n_features = sum(pq.ParquetFile(p).metadata.num_rows for p in features)
        assert n_features > 0
        assert n_features == sum(pq.ParquetFile(p).metadata.num_rows for p in books)
    # the oracle: every book row equals the exchange's true book at that grid time, all 10 levels
    for symbol in SYMBOLS:
        truth = {ts: (bids, asks) for ts, bids, asks in read_truth_book(truth_dir, symbol)}
        table = pq.read_table(sorted((data_dir / "features" / f"venue={VENUE}" / f"symbol={symbol}")
                                     .glob("*/*/part-0.parquet")))
        rows = table.to_pylist()
        assert len(rows) > 50
        mismatched = []
        for row in rows:
            bids, asks = truth[row["ts"]]
            ours = ([(row[f"bid_px_{i:02d}"], row[f"bid_sz_{i:02d}"]) for i in range(1, 11)],
                    [(row[f"ask_px_{i:02d}"], row[f"ask_sz_{i:02d}"]) for i in range(1, 11)])
            theirs = ([(float(p), float(q)) for p, q in bids[:10]] + [(None, None)] * (10 - len(bids[:10])),
                      [(float(p), float(q)) for p, q in asks[:10]] + [(None, None)] * (10 - len(asks[:10])))
            if ours != theirs:
                mismatched.append(row["ts"])
        assert mismatched == [], f"{symbol}: {len(mismatched)} of {len(rows)} rows differ from the truth"
        mid = [(r["bid_px_01"] + r["ask_px_01"]) / 2 for r in rows]
        assert [r["midprice"] for r in rows] == mid
        # every clean trade is one the exchange made, with the same price, size and side
        true_trades = {t["trade_id"]: (float(t["price"]), float(t["qty"]), t["is_buyer_maker"], t["trade_ts"])
                       for t in read_truth_trades(truth_dir, symbol)}
        clean = pq.read_table(sorted((data_dir / "clean" / "trades" / f"venue={VENUE}" / f"symbol={symbol}")
                                     .glob("*/*/part-0.parquet"))).to_pylist()
        assert len(clean) > 20
        assert [(t["price"], t["qty"], t["is_buyer_maker"], t["ts"]) for t in clean] == \
            [true_trades[t["trade_id"]] for t in clean]
        # trades lost (the exchange made them, the hour's partition lacks them, between its first and
        # last trade id) appear in the summary's per-symbol table next to the gaps
        lost = 0
        for path in (data_dir / "clean" / "trades" / f"venue={VENUE}" / f"symbol={symbol}").glob("*/*/part-0.parquet"):
            ids = set(pq.read_table(path, columns=["trade_id"]).column("trade_id").to_pylist())
            lost += sum(1 for i in range(min(ids), max(ids) + 1) if i in true_trades and i not in ids)
        assert re.search(rf"│ {symbol} │ [^│\n]+ │ +{lost:,} │", out), (symbol, lost, out[-3000:])

    con = duckdb.connect(str(data_dir / "midas.duckdb"), read_only=True)
    try:
        catalog_rows = con.execute("SELECT symbol, count(*) FROM features GROUP BY symbol ORDER BY symbol").fetchall()
    finally:
        con.close()
    assert [s for s, _ in catalog_rows] == list(SYMBOLS) and all(n > 0 for _, n in catalog_rows)

    # the three example queries and a chart per symbol
    assert out.count("midas query") == 3
    # the printed query commands work as shown (here the trades one, through bash like a user's shell)
    command = next(line for line in out.splitlines() if " query --data-dir " in line and "trade_flow" in line)
    # `midas` when the shell finds it, else the virtual environment's script (not activated here)
    program = command.split(" query ", 1)[0]
    assert program in ("midas", str(Path(sys.executable).parent / "midas")), program
    shown = subprocess.run(["bash", "-c", command.replace(" query ", " query --format csv ", 1)],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = list(csv.reader(io.StringIO(shown.stdout.strip())))
    assert lines[0] == ["venue", "symbol", "trades", "volume", "vwap", "taker_buy_share", "largest_qty"]
    trades = {s: len({r["trade_id"] for r in records[s] if r["type"] == "trade"}) for s in SYMBOLS}
    assert [line[:3] for line in lines[1:]] == [[VENUE, s, str(trades[s])] for s in SYMBOLS]
    for symbol in SYMBOLS:
        charts = list((data_dir / "charts" / VENUE).glob(f"{symbol}_*.png"))
        assert len(charts) == 1 and charts[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"chart: {charts[0]}" in out
    assert (data_dir / ".midas-demo").is_file()
    # the manifest lists exactly the raw files the demo wrote (what a later --fresh may delete)
    written = sorted(p.relative_to(data_dir).as_posix() for s in SYMBOLS for p in list_raw_files(data_dir, VENUE, s))
    assert (data_dir / ".midas-demo-files").read_text().splitlines() == written

    # the Prefect runs: both flows completed, and the summary and the hours table are artifacts
    db = sqlite3.connect(tmp_path / "prefect-home" / "prefect.db")
    try:
        runs = db.execute("SELECT flow.name, flow_run.state_type FROM flow_run JOIN flow ON flow.id = flow_run.flow_id "
                          "ORDER BY flow.name").fetchall()
        artifacts = db.execute("SELECT key, data FROM artifact WHERE key IS NOT NULL ORDER BY key").fetchall()
    finally:
        db.close()
    assert runs == [("midas-collect", "COMPLETED"), ("midas-demo-hours", "COMPLETED"),
                    ("midas-demo-summary", "COMPLETED")]
    assert [k for k, _ in artifacts] == ["midas-demo-hours", "midas-demo-summary-binance-futures"]
    assert f"| messages recorded | {total:,} |" in artifacts[1][1]
