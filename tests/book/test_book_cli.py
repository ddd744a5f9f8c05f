"""`midas import` and `midas rebuild` as a user runs them (midas.cli.main), errors included."""

from __future__ import annotations

import gzip

import pyarrow.parquet as pq

from midas.cli import main
from midas.layout import partition_file, parse_hour


def test_import_then_rebuild_from_the_command_line(recordings, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["import", str(recordings["binance-futures"]), "--venue", "binance-futures",
                 "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "BTCUSDT on binance-futures: 52260 book_ticker, 9022 depth, 1 snapshot, 10701 trade" in out
    assert "0 bad lines" in out
    assert main(["rebuild", "--venue", "binance-futures", "--data-dir", str(data),
                 "--hour", "2024-07-18T23"]) == 0
    out = capsys.readouterr().out
    assert "2024-07-18T23" in out and "1772" in out and "no_snapshot" in out
    book = partition_file(data, "book", "binance-futures", "BTCUSDT", parse_hour("2024-07-18T23"))
    assert pq.read_metadata(book).num_rows == 1772
    # the same local hour twice is refused, naming the file
    assert main(["import", str(recordings["binance-futures"]), "--venue", "binance-futures",
                 "--data-dir", str(data)]) == 2
    assert "refusing to overwrite an existing raw file" in capsys.readouterr().err


def test_wrong_venue_and_missing_data_are_clear_errors(recordings, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["import", str(recordings["binance"]), "--venue", "binance-futures",
                 "--data-dir", str(data)]) == 2
    assert "so it is a spot recording: use --venue binance" in capsys.readouterr().err
    assert not (data / "raw").exists()
    assert main(["import", str(recordings["binance-futures"]), "--venue", "binance-futures", "--symbol", "ETHUSDT",
                 "--data-dir", str(data)]) == 2
    assert ("no ETHUSDT messages in its first 10,000 lines (it holds BTCUSDT); check --symbol"
            in capsys.readouterr().err)
    assert not (data / "raw").exists()
    assert main(["rebuild", "--venue", "binance", "--data-dir", str(data), "--hour", "2024-08-09T00"]) == 2
    assert "no raw files of binance/BTCUSDT near hour 2024-08-09T00" in capsys.readouterr().err
    assert main(["rebuild", "--venue", "binance", "--data-dir", str(data), "--hour", "2024-13-01T00"]) == 2
    assert "hour '2024-13-01T00' is not" in capsys.readouterr().err


def test_import_reports_bad_lines_with_their_line_number(tmp_path, capsys):
    rec = tmp_path / "rec.txt.gz"
    diff = ('{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,'
            '"s":"BTCUSDT","U":5,"u":6,"b":[["1.0","2.0"]],"a":[]}}')
    with gzip.open(rec, "wt") as fh:
        fh.write(f"1723161253937085768 {diff}\n")
        fh.write("1723161253937085769 {not json\n")
        fh.write("garbage line\n")
        fh.write('1723161253937085770 {"lastUpdateId":5,"bids":[["1.0","1.0"]],"asks":[["2.0","1.0"]]}\n')
    assert main(["import", str(rec), "--venue", "binance", "--data-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "1 depth, 1 snapshot; 2 bad lines" in out
    assert f"{rec}:2: invalid JSON" in out
    assert f"{rec}:3: expected '<local time ns> <json>'" in out


def test_ranges_skip_empty_hours_refuse_reversed_ones_and_process_records_the_hour(recordings, tmp_path, capsys):
    from midas.config import load_settings
    from midas.scheduling import processed_hours

    data = tmp_path / "data"
    fut = ["--venue", "binance-futures", "--data-dir", str(data)]
    assert main(["import", str(recordings["binance-futures"]), *fut]) == 0
    capsys.readouterr()
    # the recording covers 23:00 and 00:00; the other hours of the range are skipped, not errors
    assert main(["rebuild", *fut, "--from", "2024-07-18T20", "--to", "2024-07-19T01"]) == 0
    out = capsys.readouterr().out
    assert "BTCUSDT: 4 hour(s) of the range have no raw data, skipped" in out
    assert "2024-07-18T23" in out and "2024-07-19T00" in out and "2024-07-18T22" not in out
    assert main(["rebuild", *fut, "--from", "2024-07-19T00", "--to", "2024-07-18T23"]) == 2
    assert "--from 2024-07-19T00 is after --to 2024-07-18T23: the range would be empty" in capsys.readouterr().err
    assert main(["process", *fut, "--from", "2024-07-20T00", "--to", "2024-07-20T05"]) == 2
    assert ("no raw data in the hours asked for BTCUSDT on binance-futures under "
            f"{data}; symbols with raw data there: BTCUSDT") in capsys.readouterr().err
    assert main(["rebuild", *fut, "--symbols", "DOGEUSDT"]) == 2
    assert (f"no raw data for DOGEUSDT on binance-futures under {data}; symbols with raw data there: "
            "BTCUSDT") in capsys.readouterr().err
    assert main(["rebuild", "--venue", "binance", "--data-dir", str(tmp_path / "typo")]) == 2
    assert f"{tmp_path / 'typo'} holds no raw data of binance (wrong --data-dir or --venue?)" in capsys.readouterr().err
    # `midas process` records the hour as processed, as the hourly job does
    assert main(["process", *fut, "--hour", "2024-07-18T23"]) == 0
    ledger = processed_hours(load_settings(env_file=None, data_dir=data, venue="binance-futures"))
    assert list(ledger) == ["binance-futures/BTCUSDT/2024-07-18T23"]
    assert ledger["binance-futures/BTCUSDT/2024-07-18T23"]["rows"]["book"] == 1772
