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
