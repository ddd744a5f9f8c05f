"""`midas config` prints every variable with its source; a bad value exits 2 naming it."""

from __future__ import annotations

import subprocess
import sys


def _midas(*args, env=None):
    import os

    full_env = dict(os.environ, **(env or {}), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "midas.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=60)


def test_config_shows_values_and_sources():
    out = _midas("config", env={"SYMBOLS": "ethusdt,btcusdt"})
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if "SYMBOLS" in line)
    assert "ETHUSDT,BTCUSDT" in line and "environment" in line
    venue = next(line for line in out.stdout.splitlines() if " VENUE " in line)
    assert "binance-futures" in venue and "default" in venue


def test_config_bad_value_exits_2_with_message():
    out = _midas("config", env={"SYMBOLS": "../etc"})
    assert out.returncode == 2
    assert "SYMBOLS='../etc'" in out.stderr
    assert "2 to 20 letters or digits" in out.stderr
