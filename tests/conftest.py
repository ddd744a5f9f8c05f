"""Shared test setup: tests never read the developer's .env or MIDAS variables from the shell."""

from __future__ import annotations

import os

import pytest

from midas.config import Settings

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

_MIDAS_VARS = {name.upper() for name in Settings.model_fields} | {"SYMBOL"}


@pytest.fixture(autouse=True)
def _clean_midas_env(monkeypatch, tmp_path_factory):
    for name in _MIDAS_VARS:
        monkeypatch.delenv(name, raising=False)
    # A cwd without .env, so load_settings() sees only what the test sets.
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    yield


REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "binance"
SPOT_RECORDING = SHARED_DATA / "spot-btcusdt-2024-08-08T2354.txt.gz"
FUTURES_RECORDING = SHARED_DATA / "usdm-btcusdt-2024-07-18T2357.txt.gz"


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def recordings():
    """The two real Binance recordings of ../shared/data/binance: {venue: path}."""
    return {"binance": SPOT_RECORDING, "binance-futures": FUTURES_RECORDING}
