"""Every validator of the settings model, and the sources `midas config` reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from midas.config import load_settings, setting_sources
from midas.errors import ConfigError


def test_defaults_follow_spec():
    s = load_settings(env_file=None)
    assert s.venue == "binance-futures"
    assert s.symbols == ["BTCUSDT"]
    assert s.data_dir == Path("data")
    assert s.ws_url == "wss://fstream.binance.com"
    assert s.rest_url == "https://fapi.binance.com"
    assert s.streams == ["depth", "trade"]
    assert (s.stall_timeout_secs, s.file_rotation_hours, s.file_rotation_gb) == (30, 1, 1)
    assert (s.flush_interval_secs, s.reconnect_delay_secs, s.max_reconnect_attempts) == (1, 5, 0)
    assert (s.snapshot_depth_limit, s.snapshot_interval_ms, s.order_book_depth) == (1000, 100, 10)
    assert (s.process_batch_size, s.time_bucket_ms, s.ofi_window) == (100_000, 100, 10)
    assert s.parquet_row_group_size == 50_000


def test_spot_venue_defaults_to_spot_urls(monkeypatch):
    monkeypatch.setenv("VENUE", "binance")
    s = load_settings(env_file=None)
    assert s.ws_url == "wss://stream.binance.com:9443"
    assert s.rest_url == "https://api.binance.com"


def test_symbols_from_env_are_upper_cased_and_deduplicated(monkeypatch):
    monkeypatch.setenv("SYMBOLS", "btcusdt, ethusdt,BTCUSDT")
    assert load_settings(env_file=None).symbols == ["BTCUSDT", "ETHUSDT"]


def test_symbol_alias(monkeypatch):
    monkeypatch.setenv("SYMBOL", "solusdt")
    assert load_settings(env_file=None).symbols == ["SOLUSDT"]


def test_dotenv_is_read_and_environment_wins(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("SYMBOLS=ethusdt\nOFI_WINDOW=20\nWS_URL=\n")
    monkeypatch.setenv("OFI_WINDOW", "30")
    s = load_settings(env_file=env)
    assert s.symbols == ["ETHUSDT"]
    assert s.ofi_window == 30
    assert s.ws_url == "wss://fstream.binance.com"   # empty in .env = the default
    sources = setting_sources(env, overrides={"data_dir": "x"})
    assert sources["symbols"] == str(env)
    assert sources["ofi_window"] == "environment"
    assert sources["data_dir"] == "option"
    assert sources["venue"] == "default"
    assert sources["ws_url"] == str(env)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SYMBOLS", "../etc", "SYMBOLS='../etc': symbol '../etc' is not allowed: 2 to 20 letters or digits"),
        ("SYMBOLS", "btc usdt", "SYMBOLS='btc usdt': symbol 'btc usdt' is not allowed"),
        ("SYMBOLS", "", "SYMBOLS='': at least one symbol is needed"),
        ("SYMBOLS", " , ", "SYMBOLS=' , ': at least one symbol is needed"),
        ("SYMBOLS", "x", "symbol 'x' is not allowed"),
        ("SYMBOLS", "a" * 21, f"symbol '{'a' * 21}' is not allowed"),
        ("VENUE", "kraken", "VENUE='kraken': allowed are binance, binance-futures"),
        ("STREAMS", "depth,ticker", "STREAMS='depth,ticker': stream 'ticker' is unknown: allowed are depth, trade, bookTicker"),
        ("STREAMS", "", "STREAMS='': at least one stream is needed"),
        ("RECONNECT_DELAY_SECS", "-1", "RECONNECT_DELAY_SECS='-1': Input should be greater than 0"),
        ("STALL_TIMEOUT_SECS", "0", "STALL_TIMEOUT_SECS='0': Input should be greater than 0"),
        ("FLUSH_INTERVAL_SECS", "-0.5", "FLUSH_INTERVAL_SECS='-0.5': Input should be greater than 0"),
        ("FILE_ROTATION_HOURS", "-2", "FILE_ROTATION_HOURS='-2': Input should be greater than 0"),
        ("FILE_ROTATION_GB", "0", "FILE_ROTATION_GB='0': Input should be greater than 0"),
        ("MAX_RECONNECT_ATTEMPTS", "-3", "MAX_RECONNECT_ATTEMPTS='-3': Input should be greater than or equal to 0"),
        ("SNAPSHOT_INTERVAL_MS", "-100", "SNAPSHOT_INTERVAL_MS='-100': Input should be greater than 0"),
        ("SNAPSHOT_INTERVAL_MS", "7", "SNAPSHOT_INTERVAL_MS='7': must divide one hour"),
        ("TIME_BUCKET_MS", "7", "TIME_BUCKET_MS='7': must divide one hour"),
        ("ORDER_BOOK_DEPTH", "0", "ORDER_BOOK_DEPTH='0': Input should be greater than or equal to 1"),
        ("PROCESS_BATCH_SIZE", "0", "PROCESS_BATCH_SIZE='0': Input should be greater than or equal to 1"),
        ("OFI_WINDOW", "0", "OFI_WINDOW='0': Input should be greater than or equal to 1"),
        ("PARQUET_ROW_GROUP_SIZE", "abc", "PARQUET_ROW_GROUP_SIZE='abc': Input should be a valid integer"),
        ("WS_URL", "http://x", "WS_URL='http://x': must be a ws:// or wss:// base URL"),
        ("REST_URL", "ftp://x", "REST_URL='ftp://x': must be an http:// or https:// base URL"),
        ("SNAPSHOT_DEPTH_LIMIT", "7", "SNAPSHOT_DEPTH_LIMIT=7 is not allowed on binance-futures: use one of 5, 10, 20, 50, 100, 500, 1000"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL='LOUD'"),
    ],
)
def test_invalid_values_name_variable_value_and_what_is_allowed(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as err:
        load_settings(env_file=None)
    assert expected in str(err.value)


def test_spot_snapshot_limit_range(monkeypatch):
    monkeypatch.setenv("VENUE", "binance")
    assert load_settings(env_file=None, snapshot_depth_limit=5000).snapshot_depth_limit == 5000
    with pytest.raises(ConfigError) as err:
        load_settings(env_file=None, snapshot_depth_limit=5001)
    assert "use an integer from 1 to 5000" in str(err.value)


def test_every_spec_variable_is_in_env_example(repo_root):
    from midas.config import Settings

    example = (repo_root / ".env.example").read_text()
    names = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line and not line.startswith("#")}
    assert names == {n.upper() for n in Settings.model_fields}
    s = load_settings(env_file=repo_root / ".env.example")
    assert s.symbols == ["BTCUSDT"] and s.ws_url == "wss://fstream.binance.com"


def test_blank_values_in_dotenv_mean_the_default(tmp_path):
    env = tmp_path / ".env"
    env.write_text("DATA_DIR=\nOFI_WINDOW=\nWS_URL=\n")
    s = load_settings(env_file=env)
    assert (s.data_dir, s.ofi_window, s.ws_url) == (Path("data"), 10, "wss://fstream.binance.com")


def test_errors_say_where_the_bad_value_was_set(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("OFI_WINDOW=ten\n")
    with pytest.raises(ConfigError) as err:
        load_settings(env_file=env)
    assert str(err.value).endswith(f"OFI_WINDOW='ten': Input should be a valid integer, unable to parse "
                                   f"string as an integer (set in {env})")
    monkeypatch.setenv("OFI_WINDOW", "0")
    with pytest.raises(ConfigError, match=r"OFI_WINDOW='0': .* \(set in the environment\)$"):
        load_settings(env_file=env)
    monkeypatch.delenv("OFI_WINDOW")
    with pytest.raises(ConfigError, match=r"VENUE='kraken': allowed are binance, binance-futures "
                                          r"\(set by the option --venue\)$"):
        load_settings(env_file=None, venue="kraken")


def test_a_mistyped_name_in_dotenv_is_reported(tmp_path, caplog):
    env = tmp_path / ".env"
    env.write_text("OFI_WINDW=20\nPREFECT_API_URL=http://127.0.0.1:4200/api\nSYMBOLZ=ethusdt\n")
    with caplog.at_level("WARNING", logger="midas.config"):
        s = load_settings(env_file=env)
        said = len(caplog.records)
        load_settings(env_file=env)
        assert len(caplog.records) == said            # said once per process, not at every read
    assert s.ofi_window == 10
    assert sorted({r.getMessage() for r in caplog.records if r.name == "midas.config"}) == [
        f"{env}: OFI_WINDW is not a setting; did you mean OFI_WINDOW? (it is ignored)",
        f"{env}: SYMBOLZ is not a setting; did you mean SYMBOL? (it is ignored)"]
