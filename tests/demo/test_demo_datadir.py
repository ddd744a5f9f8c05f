"""The demo's data directory rules: --fresh removes only what a demo wrote; real data is refused."""

from __future__ import annotations

import pytest

from midas.demo.datadir import MARKER, prepare_data_dir
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
    (d / "notes.txt").write_text("mine")
    removed = prepare_data_dir(d, fresh=True)
    assert sorted(p.name for p in removed) == ["features", "midas.duckdb", "raw"]
    assert sorted(p.name for p in d.iterdir()) == [MARKER, "notes.txt"]


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
