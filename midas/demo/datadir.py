"""The demo's data directory: `--fresh` empties what an earlier demo left, never anything else.

A directory the demo writes into gets a marker file. `--fresh` removes MIDAS's own entries (raw/,
clean/, features/, charts/, state/, the catalog, the replay capture) only from a directory that carries the marker or
holds none of them; a directory with MIDAS data and no marker (e.g. real recordings in `data/`) is
refused with an error saying how to proceed, so the demo can never wipe a production recording.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from midas.errors import ConfigError

MARKER = ".midas-demo"
MIDAS_ENTRIES = ("raw", "clean", "features", "charts", "state", "midas.duckdb", "midas.duckdb.wal",
                 "replay-capture")


def midas_entries(data_dir: Path) -> list[Path]:
    return [data_dir / name for name in MIDAS_ENTRIES if (data_dir / name).exists()]


def prepare_data_dir(data_dir: Path, fresh: bool) -> list[Path]:
    """Create the directory and mark it as the demo's; with `fresh`, remove the previous demo's data.

    Returns the entries removed. Raises ConfigError for a directory holding data the demo did not make.
    """
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"demo data directory {data_dir} exists and is not a directory: "
                          "set DEMO_DATA_DIR (or --data-dir) to a directory")
    data_dir.mkdir(parents=True, exist_ok=True)
    marker = data_dir / MARKER
    existing = midas_entries(data_dir)
    removed: list[Path] = []
    if fresh and existing:
        if not marker.exists():
            raise ConfigError(
                f"{data_dir} holds MIDAS data that the demo did not write "
                f"({', '.join(p.name for p in existing)}): the demo will not delete it. Use another "
                "directory (DEMO_DATA_DIR=demo-data or --data-dir demo-data), or --continue to add "
                "the demo's data to it")
        for path in existing:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    if marker.exists() or not existing or removed:
        # Only a directory that holds nothing but the demo's data is marked as the demo's: data
        # added with --continue to someone else's directory stays protected from --fresh.
        marker.write_text("This directory holds data written by `midas demo`; `midas demo --fresh` "
                          "empties it.\n")
    return removed
