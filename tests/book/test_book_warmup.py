"""`python -m midas.book.warmup` (the Docker image runs it at build time) fills an empty numba cache
with everything a real rebuild needs: afterwards, rebuilding both real recordings compiles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# In a fresh process: import both recordings, rebuild every hour, report what numba compiled.
REBUILD_RECORDINGS = """
import json, sys, tempfile
from pathlib import Path
from midas.book import rebuild_hour
from midas.book.warmup import numba_functions
from midas.config import load_settings
from midas.importer import import_recording
from midas.scheduling import pending_hours

rows = {}
with tempfile.TemporaryDirectory() as tmp:
    for venue, path in json.loads(sys.argv[1]).items():
        import_recording(Path(path), venue, Path(tmp))
        settings = load_settings(env_file=None, data_dir=tmp, venue=venue, symbols=["BTCUSDT"])
        for key in pending_hours(settings):
            rows[f"{venue} {key.hour:%Y-%m-%dT%H}"] = rebuild_hour(settings, venue, key.symbol, key.hour).rows["book"]
print(json.dumps({"rows": rows, "numba": numba_functions()}))
"""


@pytest.mark.slow
def test_the_warm_up_compiles_what_a_real_rebuild_needs(tmp_path, recordings):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    warm = subprocess.run([sys.executable, "-m", "midas.book.warmup"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.startswith(f"numba warm-up: 20 signatures compiled, 0 loaded from the cache; "
                                  f"cache: {tmp_path / 'numba'} ("), warm.stdout
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "numba").rglob("*.nbi"))
    assert cached == sorted([f"kernels.{n}" for n in ("_set_level", "apply_levels", "is_crossed", "write_top",
                                                       "grid_at_or_after", "need_rows", "emit_before", "run_synced")]
                            + [f"lineparse.{n}" for n in ("_same", "_key_id", "_string_end", "_decimal_units",
                                                          "_quoted_decimal", "_parse_line", "_parse_all")])

    paths = {venue: str(path) for venue, path in recordings.items()}
    rebuild = subprocess.run([sys.executable, "-c", REBUILD_RECORDINGS, json.dumps(paths)], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rebuild.returncode == 0, rebuild.stderr
    report = json.loads(rebuild.stdout.splitlines()[-1])
    assert report["rows"] == {"binance 2024-08-08T23": 3445, "binance 2024-08-09T00": 3059,
                              "binance-futures 2024-07-18T23": 1772, "binance-futures 2024-07-19T00": 3023}
    compiled = {name: c for name, (c, _) in report["numba"].items() if c}
    loaded = sum(h for _, h in report["numba"].values())
    assert (compiled, loaded) == ({}, 6)           # nothing compiled: the 6 entry points came from the cache
