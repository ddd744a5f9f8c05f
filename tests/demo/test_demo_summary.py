"""The demo's live raw-file progress and its closing summary, on real raw files and partitions."""

from __future__ import annotations

from rich.console import Console

from midas.doctor import format_bytes
from midas.demo.progress import RawProgress, RawWatcher
from midas.demo.summary import QueryResult, StageTiming, build_report, render_report, report_markdown
from midas.inspection import take_inventory
from midas.layout import hour_start_us, parse_hour, raw_file_path
from midas.raw import RawFileWriter

H23 = parse_hour("2024-07-18T23")
VENUE = "binance-futures"


def _record(kind, i):
    return {"type": kind, "venue": VENUE, "symbol": "BTCUSDT", "exchange_ts": i, "local_ts": i}


def _write(data_dir, symbol, part, kinds, close=True):
    w = RawFileWriter(raw_file_path(data_dir, VENUE, symbol, H23, part))
    for i, kind in enumerate(kinds):
        w.write(_record(kind, i))
        if i % 3 == 2:
            w.flush()
    if close:
        return w.close()
    w.flush()
    w.abort()
    return w.partial_path


def test_raw_watcher_counts_final_and_partial_files(tmp_path):
    f1 = _write(tmp_path, "BTCUSDT", 0, ["snapshot"] + ["depth"] * 9)
    watcher = RawWatcher(tmp_path, VENUE, ["BTCUSDT", "ETHUSDT"])
    assert watcher.poll() == RawProgress(10, 1, 0, f1.stat().st_size)
    p = _write(tmp_path, "ETHUSDT", 0, ["snapshot", "trade", "trade", "depth"], close=False)
    # a torn tail: half a frame appended to the file being written is not counted
    with open(p, "ab") as fh:
        fh.write(b"\x28\xb5\x2f\xfd\x00\x58")
    progress = watcher.poll()
    assert progress == RawProgress(14, 1, 1, f1.stat().st_size + p.stat().st_size)
    assert progress.line() == (f"14 messages written, 1 file(s) closed, 1 open, "
                               f"{f1.stat().st_size + p.stat().st_size} B")


def test_report_figures(features_hour):
    h0 = hour_start_us(H23)
    gap = {"start_ts": h0 + 1_000_000, "end_ts": h0 + 3_500_000, "reason": "sequence_gap",
           "first_update_id": 5, "last_update_id": 9}
    data_dir, _ = features_hour(ks=range(100), gaps=[gap])
    features_hour(symbol="XRPUSDT", ks=range(7))          # another symbol: not in this report
    f1 = _write(data_dir, "BTCUSDT", 0, ["snapshot"] + ["depth"] * 20 + ["trade"] * 5 + ["event"])
    f2 = _write(data_dir, "BTCUSDT", 1, ["snapshot"] + ["depth"] * 3)
    inv = take_inventory(data_dir)
    stages = [StageTiming("collect", 31, "messages", 2.0), StageTiming("rebuild", 31, "records", 0.0)]
    report = build_report(inv, venue=VENUE, symbols=["BTCUSDT"], collect_seconds=2.0,
                          hours=[("BTCUSDT", H23, 100)], stages=stages)
    assert report.messages == {"depth": 23, "event": 1, "snapshot": 2, "trade": 5}
    assert report.total_messages == 31
    assert report.raw_files == 2 and report.raw_bytes == f1.stat().st_size + f2.stat().st_size
    assert report.rows == {"book": 100, "trades": 0, "gaps": 1, "features": 100}
    features_bytes = [p.bytes for p in inv.partitions if p.dataset == "features" and p.symbol == "BTCUSDT"][0]
    assert report.features_fraction == features_bytes / report.raw_bytes
    assert report.gap_reasons() == {"sequence_gap": 1}
    assert stages[0].per_second == 15.5
    report.queries.append(QueryResult("trades per symbol", "SELECT 1", ["symbol", "trades"], [("BTCUSDT", 5)]))
    report.charts.append(data_dir / "charts" / "x.png")

    console = Console(width=140, record=True)
    render_report(report, console)
    text = console.export_text()
    assert "MIDAS demo summary: binance-futures BTCUSDT" in text
    assert "31 (23 depth, 1 event, 2 snapshot, 5 trade)" in text
    assert "│ gaps                     │                          1 (1 sequence_gap) │" in text
    assert f"100 ({format_bytes(features_bytes)}) │" in text
    assert "│ 23:00:01.000 │ 2.500   │ sequence_gap │" in text
    assert "│ collect │ 31 messages │    2.00 │ 16 messages/s │" in text
    assert "│ rebuild │  31 records │    0.00 │             - │" in text
    assert f"chart: {data_dir / 'charts' / 'x.png'}" in text
    assert "│ BTCUSDT │ 5      │" in text
    assert "# trades per symbol\nmidas query 'SELECT 1'\nSELECT 1\n" in text

    md = report_markdown(report)
    assert "| messages recorded | 31 |" in md
    assert "| features rows | 100 |" in md
    assert "| gaps | 1 (1 sequence_gap) |" in md
    assert f"| features size / raw size | {report.features_fraction:.1%} |" in md


def test_suggested_commands_use_what_the_shell_finds(monkeypatch, repo_root):
    import sys
    from pathlib import Path

    from midas.demo.summary import midas_command

    bin_dir = Path(sys.executable).parent
    monkeypatch.chdir(bin_dir.parent.parent)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")                      # not activated: the path
    assert midas_command() == f"{bin_dir.parent.name}/{bin_dir.name}/midas"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")          # activated: plain `midas`
    assert midas_command() == "midas"


def _spot_hour(data_dir, symbol, start_ms, trade_ids, first_id=500, diffs=20):
    """A spot raw file: a snapshot, `diffs` contiguous diffs 100 ms apart, then trades with these ids."""
    def rec(kind, ms, **fields):
        return {"type": kind, "venue": "binance", "symbol": symbol, "exchange_ts": ms * 1000,
                "local_ts": ms * 1000, **fields}

    w = RawFileWriter(raw_file_path(data_dir, "binance", symbol, parse_hour("2024-01-03T05"), 0), fsync=False)
    w.write(rec("snapshot", start_ms, exchange_ts=None, last_update_id=first_id, bids=[["100.00", "1.0"]],
                asks=[["101.00", "2.0"]], transaction_ts=None, depth_limit=1000))
    for k in range(diffs):
        u = first_id + 1 + k
        w.write(rec("depth", start_ms + 100 * (k + 1), transaction_ts=None, first_update_id=u, last_update_id=u,
                    prev_update_id=None, bids=[["100.00", f"{1 + k}.0"]], asks=[["101.00", "2.0"]]))
    for k, trade_id in enumerate(trade_ids):
        w.write(rec("trade", start_ms + 500 + k, trade_id=trade_id, price="100.50", qty="0.1",
                    is_buyer_maker=False, trade_ts=(start_ms + 500 + k) * 1000, trade_type=None))
    return w.close()


def test_the_summary_shows_trades_missing_per_symbol_next_to_its_gaps(tmp_path):
    """Trade ids skipped inside an hour (trades lost, e.g. while the trade socket was down) are
    counted by the rebuild, kept in the ledger of processed hours, and shown per symbol."""
    from midas.config import load_settings
    from midas.scheduling import process_and_record, processed_hours

    data_dir, hour, start_ms = tmp_path / "data", parse_hour("2024-01-03T05"), 1704258001000
    _spot_hour(data_dir, "BTCUSDT", start_ms, (70, 71, 74, 75, 79))       # 72, 73, 76, 77, 78 lost
    _spot_hour(data_dir, "ETHUSDT", start_ms, (10, 11, 12))
    symbols = ["BTCUSDT", "ETHUSDT", "XRPUSDT"]                            # XRPUSDT: never processed
    settings = load_settings(env_file=None, data_dir=data_dir, venue="binance", symbols=symbols)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        process_and_record(settings, "binance", symbol, hour)
    report = build_report(take_inventory(data_dir), venue="binance", symbols=symbols, collect_seconds=1.0,
                          hours=[], stages=[], ledger=processed_hours(settings))
    assert report.trades_missing == {"BTCUSDT": 5, "ETHUSDT": 0}
    assert report.symbol_rows() == [("BTCUSDT", "1 (1 no_snapshot)", "5"), ("ETHUSDT", "1 (1 no_snapshot)", "0"),
                                    ("XRPUSDT", "0", "-")]

    console = Console(width=140, record=True)
    render_report(report, console)
    text = console.export_text()
    assert "gaps and trades missing per symbol" in text
    assert "│ BTCUSDT │ 1 (1 no_snapshot) │              5 │" in text
    assert "│ ETHUSDT │ 1 (1 no_snapshot) │              0 │" in text
    assert "│ XRPUSDT │ 0                 │              - │" in text
    md = report_markdown(report)
    assert ("| symbol | gaps | trades missing |\n|---|---|---|\n| BTCUSDT | 1 (1 no_snapshot) | 5 |\n"
            "| ETHUSDT | 1 (1 no_snapshot) | 0 |\n| XRPUSDT | 0 | - |\n") in md
    # without the ledger nothing is counted: every symbol shows "-", not 0
    bare = build_report(take_inventory(data_dir), venue="binance", symbols=symbols, collect_seconds=1.0,
                        hours=[], stages=[])
    assert [row[2] for row in bare.symbol_rows()] == ["-", "-", "-"]
