"""The demo's data directory: `--fresh` empties what an earlier demo left, never anything else.

A directory the demo writes into gets a marker file. `--fresh` removes MIDAS's own entries (raw/,
clean/, features/, charts/, state/, the catalog, the replay capture) only from a directory that carries the marker or
holds none of them; a directory with MIDAS data and no marker (e.g. real recordings in `data/`) is
refused with an error saying how to proceed, so the demo can never wipe a production recording.

A marked directory can still receive other data later (`midas collect` or `midas import` with the
same DATA_DIR): the demo lists the raw files it wrote in a manifest, and `--fresh` refuses a
directory holding raw files that are not on it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from midas.errors import ConfigError

MARKER = ".midas-demo"
MANIFEST = ".midas-demo-files"     # raw files the demo wrote, one path per line, relative to the directory
MIDAS_ENTRIES = ("raw", "clean", "features", "charts", "state", "midas.duckdb", "midas.duckdb.wal",
                 "replay-capture", MANIFEST)


def midas_entries(data_dir: Path) -> list[Path]:
    return [data_dir / name for name in MIDAS_ENTRIES if (data_dir / name).exists()]


def raw_file_set(data_dir: Path) -> set[str]:
    """Every raw file under the directory, by its final name (a `.partial` counts as what it becomes)."""
    raw = Path(data_dir) / "raw"
    if not raw.is_dir():
        return set()
    return {p.relative_to(data_dir).as_posix().removesuffix(".partial") for p in raw.rglob("*") if p.is_file()}


def _manifest(data_dir: Path) -> set[str] | None:
    """The raw files the demo wrote; None for a demo directory marked before manifests existed."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        return None
    return {line for line in path.read_text().splitlines() if line}


def record_demo_files(data_dir: Path, before: set[str]) -> None:
    """Add the raw files that appeared since `before` (taken when the demo started) to the manifest
    of a demo directory. A directory that is not the demo's (no marker) gets no manifest."""
    data_dir = Path(data_dir)
    if not (data_dir / MARKER).exists():
        return
    known = _manifest(data_dir) or set()
    wrote = raw_file_set(data_dir) - before
    (data_dir / MANIFEST).write_text("".join(f"{p}\n" for p in sorted(known | wrote)))


def foreign_raw_files(data_dir: Path) -> list[str]:
    """Raw files of a demo directory that the demo did not write (collected or imported into it)."""
    known = _manifest(data_dir)
    if known is None:
        return []
    return sorted(raw_file_set(data_dir) - known)


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
        foreign = foreign_raw_files(data_dir)
        if foreign:
            raise ConfigError(
                f"{data_dir} holds {len(foreign)} raw file(s) that the demo did not write (e.g. "
                f"{foreign[0]}; recorded or imported there after a demo): the demo will not delete "
                "them. Use another directory (DEMO_DATA_DIR=demo-data or --data-dir demo-data), or "
                "--continue to add the demo's data to it")
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
        if removed or not existing:
            (data_dir / MANIFEST).write_text("")
    return removed
