"""Raw files: frames per flush, .partial until closed, torn tails dropped, salvage keeps every complete record."""

from __future__ import annotations

import pytest

from midas.errors import RawFileError
from midas.raw import RawFileReader, RawFileWriter, read_raw_records, salvage_partial, scan_raw_file


def _records(n, start=0):
    return [{"type": "event", "venue": "binance", "symbol": "BTCUSDT", "exchange_ts": None,
             "local_ts": 1000 + i, "event": "connected", "detail": f"r{i}"} for i in range(start, start + n)]


def test_writer_partial_then_final(tmp_path):
    final = tmp_path / "BTCUSDT_20240101T00_0.jsonl.zst"
    w = RawFileWriter(final)
    assert w.partial_path.exists() and not final.exists()
    for r in _records(3):
        w.write(r)
    w.close()
    assert final.exists() and not w.partial_path.exists()
    assert read_raw_records(final) == _records(3)
    stats = scan_raw_file(final)
    assert (stats.records, stats.first_local_ts, stats.last_local_ts) == (3, 1000, 1002)
    with pytest.raises(RawFileError, match="refusing to overwrite"):
        RawFileWriter(final)


def test_torn_frame_keeps_every_complete_frame(tmp_path):
    final = tmp_path / "BTCUSDT_20240101T00_0.jsonl.zst"
    w = RawFileWriter(final)
    for r in _records(4):
        w.write(r)
    w.flush()
    for r in _records(3, start=4):
        w.write(r)
    w.flush()
    w.abort()
    data = w.partial_path.read_bytes()
    w.partial_path.write_bytes(data[:-7])     # a crash in the middle of the second frame
    reader = RawFileReader(w.partial_path)
    got = [rec for _, rec in reader.iter_records()]
    assert got[:4] == _records(4)
    assert all(rec in _records(7) for rec in got)   # never a corrupt record
    report = salvage_partial(w.partial_path)
    assert report.final_path == final and not w.partial_path.exists()
    assert read_raw_records(final) == got


def test_last_line_without_newline_is_dropped_and_reported(tmp_path):
    import zstandard

    path = tmp_path / "X_20240101T00_0.jsonl.zst.partial"
    body = b'{"type":"event","local_ts":1}\n{"type":"event","local_ts":2}\n{"type":"eve'
    path.write_bytes(zstandard.ZstdCompressor().compress(body))
    reader = RawFileReader(path)
    assert [r for _, r in reader.iter_records()] == [{"type": "event", "local_ts": 1}, {"type": "event", "local_ts": 2}]
    assert reader.torn_tail
    assert "torn last line dropped" in str(reader.problems[0]) and ":3:" in str(reader.problems[0])
    report = salvage_partial(path)
    assert report.records_kept == 2


def test_bad_lines_are_reported_with_line_numbers(tmp_path):
    import zstandard

    path = tmp_path / "X_20240101T00_0.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b'{"a":1}\nnot json\n[1]\n{"b":2}\n'))
    reader = RawFileReader(path)
    assert [r for _, r in reader.iter_records()] == [{"a": 1}, {"b": 2}]
    assert [(p.line, p.reason.split(" (")[0]) for p in reader.problems] == [
        (2, "invalid JSON"), (3, "line is not a JSON object")]


def test_corrupt_zstd_data_keeps_what_came_before(tmp_path):
    import zstandard

    path = tmp_path / "X_20240101T00_0.jsonl.zst"
    good = zstandard.ZstdCompressor().compress(b'{"a":1}\n')
    path.write_bytes(good + b"\x28\xb5\x2f\xfd garbage that is not a frame")
    reader = RawFileReader(path)
    assert [r for _, r in reader.iter_records()] == [{"a": 1}]
    assert reader.torn_tail and "corrupt zstd data" in reader.problems[0].reason


def test_salvage_never_overwrites_a_final_file(tmp_path):
    final = tmp_path / "X_20240101T00_0.jsonl.zst"
    final.write_bytes(b"keep me")
    partial = tmp_path / "X_20240101T00_0.jsonl.zst.partial"
    partial.write_bytes(b"")
    with pytest.raises(RawFileError, match="exists already"):
        salvage_partial(partial)
    assert final.read_bytes() == b"keep me" and partial.exists()
