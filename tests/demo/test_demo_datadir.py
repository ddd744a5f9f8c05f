"""The demo's data directory rules: --fresh removes only what a demo wrote; real data is refused."""

from __future__ import annotations

import pytest

from midas.demo.datadir import MANIFEST, MARKER, prepare_data_dir, record_demo_files
from midas.errors import ConfigError


def _fill(d):
    (d / "raw" / "binance-futures").mkdir(parents=True)
    (d / "raw" / "binance-futures" / "f").write_text("x")
    (d / "features").mkdir()
    (d / "midas.duckdb").write_text("db")


def test_fresh_on_a_new_directory_marks_it(tmp_path):
    d = tmp_path / "demo"
    assert prepare_data_dir(d, fresh=True) == []
    assert (d / MARKER).is_file()


def test_fresh_removes_only_midas_entries_of_a_demo_directory(tmp_path):
    d = tmp_path / "demo"
    prepare_data_dir(d, fresh=True)
    _fill(d)
    record_demo_files(d, before=set())       # as run_demo does after its run
    assert (d / MANIFEST).read_text() == "raw/binance-futures/f\n"
    (d / "notes.txt").write_text("mine")
    removed = prepare_data_dir(d, fresh=True)
    assert sorted(p.name for p in removed) == [MANIFEST, "features", "midas.duckdb", "raw"]
    assert sorted(p.name for p in d.iterdir()) == [MARKER, MANIFEST, "notes.txt"]
    assert (d / MANIFEST).read_text() == ""


def test_fresh_refuses_raw_files_added_to_a_demo_directory_after_the_demo(tmp_path):
    d = tmp_path / "data"
    prepare_data_dir(d, fresh=True)
    _fill(d)
    record_demo_files(d, before=set())
    imported = d / "raw" / "binance-futures" / "BTCUSDT" / "2024-07-18" / "BTCUSDT_20240718T23_0.jsonl.zst"
    imported.parent.mkdir(parents=True)
    imported.write_text("a recording imported with midas import")
    with pytest.raises(ConfigError, match=r"holds 1 raw file\(s\) that the demo did not write \(e\.g\. "
                                          r"raw/binance-futures/BTCUSDT/2024-07-18/BTCUSDT_20240718T23_0"
                                          r"\.jsonl\.zst; .*the demo will not delete them"):
        prepare_data_dir(d, fresh=True)
    assert imported.is_file() and (d / "raw" / "binance-futures" / "f").is_file()
    # a later demo run with --continue keeps it foreign: only what that run writes is the demo's
    before = {"raw/binance-futures/f", "raw/binance-futures/BTCUSDT/2024-07-18/BTCUSDT_20240718T23_0.jsonl.zst"}
    (d / "raw" / "binance-futures" / "g.partial").write_text("y")
    record_demo_files(d, before)
    assert (d / MANIFEST).read_text() == "raw/binance-futures/f\nraw/binance-futures/g\n"
    with pytest.raises(ConfigError, match="the demo will not delete them"):
        prepare_data_dir(d, fresh=True)


def test_a_demo_directory_from_before_manifests_is_still_emptied(tmp_path):
    d = tmp_path / "demo"
    prepare_data_dir(d, fresh=True)
    (d / MANIFEST).unlink()
    _fill(d)
    assert sorted(p.name for p in prepare_data_dir(d, fresh=True)) == ["features", "midas.duckdb", "raw"]


def test_continue_keeps_everything(tmp_path):
    d = tmp_path / "demo"
    prepare_data_dir(d, fresh=True)
    _fill(d)
    assert prepare_data_dir(d, fresh=False) == []
    assert (d / "raw" / "binance-futures" / "f").read_text() == "x"


def test_fresh_refuses_data_the_demo_did_not_write(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    _fill(d)
    with pytest.raises(ConfigError, match=r"holds MIDAS data that the demo did not write \(raw, features, "
                                          r"midas.duckdb\): the demo will not delete it"):
        prepare_data_dir(d, fresh=True)
    assert (d / "raw" / "binance-futures" / "f").is_file()
    # --continue adds to it but does not mark it, so a later --fresh still refuses
    assert prepare_data_dir(d, fresh=False) == []
    assert not (d / MARKER).exists()
    with pytest.raises(ConfigError):
        prepare_data_dir(d, fresh=True)


def test_a_file_is_not_a_data_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        prepare_data_dir(f, fresh=True)


def test_demo_command_refuses_before_starting_anything(tmp_path, capsys):
    from midas.cli import main

    d = tmp_path / "data"
    d.mkdir()
    _fill(d)
    assert main(["demo", "--data-dir", str(d)]) == 2
    err = capsys.readouterr().err
    assert f"error: {d} holds MIDAS data that the demo did not write" in err
    assert (d / "raw" / "binance-futures" / "f").is_file()
    assert main(["demo", "--seconds", "0", "--data-dir", str(tmp_path / "new")]) == 2
    assert "--seconds" in capsys.readouterr().err and not (tmp_path / "new").exists()
