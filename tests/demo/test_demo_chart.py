"""`midas chart` on small features partitions with the SPEC §3 columns, values checked exactly."""

from __future__ import annotations

from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from midas.chart import chart_data, default_chart_path, write_chart
from midas.cli import main
from midas.config import load_settings
from midas.errors import DataError
from midas.layout import hour_start_us, parse_hour, partition_file

HOUR = parse_hour("2024-07-18T23")
H0 = hour_start_us(HOUR)
KS = [k for k in range(600) if not (200 <= k < 250) and not (400 <= k < 410)]
GAP = {"start_ts": H0 + 199 * 100_000 + 30_000, "end_ts": H0 + 250 * 100_000 - 10_000,
       "reason": "sequence_gap", "first_update_id": 1199, "last_update_id": 1250}


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_chart_data_breaks_gaps_and_volume_bins(features_hour):
    data_dir, rows = features_hour(ks=KS, gaps=[GAP])
    features = pq.read_table(partition_file(data_dir, "features", "binance-futures", "BTCUSDT", HOUR))
    gaps = pq.read_table(partition_file(data_dir, "gaps", "binance-futures", "BTCUSDT", HOUR))
    data = chart_data(features, gaps, symbol="BTCUSDT", venue="binance-futures", hour=HOUR,
                      interval_us=100_000)
    assert data.rows == 540
    assert data.breaks == [200, 350]          # row indexes of k=250 and k=410
    assert data.shaded == [(GAP["start_ts"], GAP["end_ts"], "sequence_gap"),
                           (H0 + 399 * 100_000, H0 + 410 * 100_000, "no rows")]
    # span 60 s / 120 target bins = 0.5 s bins; 120 bins from k=0
    assert data.volume_bin_us == 500_000
    assert len(data.buy_volume) == 120 and data.volume_bin_start[0] == H0
    expected_buy = [Decimal(0)] * 120
    expected_sell = [Decimal(0)] * 120
    for k in KS:
        if k % 7 == 0:
            expected_buy[k // 5] += Decimal(k) / 1000
        if k % 5 == 0:
            expected_sell[k // 5] += Decimal("0.002")
    assert [round(Decimal(v), 9) for v in data.buy_volume] == [round(v, 9) for v in expected_buy]
    assert [round(Decimal(v), 9) for v in data.sell_volume] == [round(v, 9) for v in expected_sell]
    assert data.mid[0] == 100.0 and data.mid[-1] == 100 + 599 / 100
    assert data.bid[1] == pytest.approx(100.01 - 0.05) and data.ask[1] == pytest.approx(100.01 + 0.05)


def test_gap_rows_are_clipped_to_the_hour(features_hour):
    early = {**GAP, "start_ts": H0 - 5_000_000, "end_ts": H0 + 100_000, "reason": "disconnected"}
    open_end = {**GAP, "start_ts": H0 + 3_500_000_000, "end_ts": None, "reason": "no_snapshot"}
    data_dir, _ = features_hour(ks=range(10), gaps=[early, open_end])
    settings = load_settings(env_file=None, data_dir=data_dir)
    features = pq.read_table(partition_file(data_dir, "features", "binance-futures", "BTCUSDT", HOUR))
    gaps = pq.read_table(partition_file(data_dir, "gaps", "binance-futures", "BTCUSDT", HOUR))
    data = chart_data(features, gaps, symbol="BTCUSDT", venue="binance-futures", hour=HOUR,
                      interval_us=settings.snapshot_interval_us)
    assert data.shaded == [(H0, H0 + 100_000, "disconnected"),
                           (H0 + 3_500_000_000, H0 + 3_600_000_000, "no_snapshot")]
    assert data.breaks == [] and data.volume_bin_us == 100_000 and len(data.buy_volume) == 10


def test_write_chart_png(features_hour):
    data_dir, _ = features_hour(ks=KS, gaps=[GAP])
    settings = load_settings(env_file=None, data_dir=data_dir)
    path = write_chart(settings, "binance-futures", "btcusdt", "2024-07-18T23")
    assert path == data_dir / "charts" / "binance-futures" / "BTCUSDT_20240718T23.png"
    assert path == default_chart_path(data_dir, "binance-futures", "BTCUSDT", HOUR)
    assert _png_size(path) == (1170, 990)     # 13 x 11 inches at 90 dpi
    assert not list(path.parent.glob("*.tmp"))


def test_chart_command(features_hour, tmp_path, capsys):
    data_dir, _ = features_hour(symbol="ETHUSDT", venue="binance", hour="2024-08-09T00", ks=range(300))
    out = tmp_path / "eth.png"
    code = main(["chart", "--symbol", "ETHUSDT", "--hour", "2024-08-09T00", "--venue", "binance",
                 "--data-dir", str(data_dir), "--out", str(out)])
    assert code == 0
    assert capsys.readouterr().out.strip() == f"chart written: {out}"
    assert _png_size(out) == (1170, 990)


def test_chart_errors_name_what_is_missing(features_hour, tmp_path, capsys):
    data_dir, _ = features_hour(ks=range(5))
    code = main(["chart", "--symbol", "BTCUSDT", "--hour", "2024-07-18T22", "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert code == 2
    assert "no features for BTCUSDT on binance-futures at 2024-07-18T22" in err
    assert main(["chart", "--symbol", "BTC/USDT", "--hour", "2024-07-18T23", "--data-dir", str(data_dir)]) == 2
    assert "symbol 'BTC/USDT' is not allowed" in capsys.readouterr().err
    assert main(["chart", "--symbol", "BTCUSDT", "--hour", "yesterday", "--data-dir", str(data_dir)]) == 2
    assert "hour 'yesterday' is not allowed" in capsys.readouterr().err
    # a features file without the chart's columns
    import pyarrow as pa
    bad = partition_file(data_dir, "features", "binance-futures", "BTCUSDT", HOUR)
    pq.write_table(pa.table({"ts": [H0]}), bad)
    with pytest.raises(DataError, match=r"lacks column\(s\) bid_px_01, ask_px_01, midprice"):
        write_chart(load_settings(env_file=None, data_dir=data_dir), "binance-futures", "BTCUSDT", HOUR)


def test_chart_command_defaults_to_the_latest_processed_hour(features_hour, capsys):
    data_dir, _ = features_hour(hour="2024-07-18T23", ks=range(20))
    features_hour(hour="2024-07-19T00", ks=range(20))
    assert main(["chart", "--symbol", "btcusdt", "--data-dir", str(data_dir)]) == 0
    path = data_dir / "charts" / "binance-futures" / "BTCUSDT_20240719T00.png"
    assert capsys.readouterr().out.strip() == f"chart written: {path}"
    assert _png_size(path) == (1170, 990)
    assert main(["chart", "--symbol", "ETHUSDT", "--data-dir", str(data_dir)]) == 2
    assert "no processed hour of ETHUSDT on binance-futures" in capsys.readouterr().err
