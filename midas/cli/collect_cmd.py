"""`midas collect`: record Binance streams into raw files until stopped or for --duration seconds."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from midas.cli.common import settings_from_options


def collect(
    symbols: Optional[str] = typer.Option(None, help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT (default: SYMBOLS)."),
    duration: Optional[float] = typer.Option(
        None, min=0.1, help="Stop after this many seconds (default: run until Ctrl-C / SIGTERM)."),
    venue: Optional[str] = typer.Option(None, help="binance (spot) or binance-futures (default: VENUE)."),
    streams: Optional[str] = typer.Option(None, help="Any of depth,trade,bookTicker (default: STREAMS)."),
    data_dir: Optional[Path] = typer.Option(None, help="Root of raw/ (default: DATA_DIR)."),
    ws_url: Optional[str] = typer.Option(None, help="WebSocket base, e.g. the URL `midas exchange` prints (default: WS_URL)."),
    rest_url: Optional[str] = typer.Option(None, help="REST base (default: REST_URL)."),
    rotation_hours: Optional[float] = typer.Option(
        None, help="Start a new file this often, in hours; fractions allowed (default: FILE_ROTATION_HOURS)."),
    rotation_gb: Optional[float] = typer.Option(
        None, help="Start a new part when a file reaches this size in GB (default: FILE_ROTATION_GB)."),
    health_every: float = typer.Option(60.0, min=0.5, help="Seconds between health summary lines."),
) -> None:
    """Record diff-depth, trades (and optionally bookTicker) of every symbol into
    data/raw/<venue>/<SYMBOL>/<date>/<SYMBOL>_<YYYYMMDD>T<HH>_<n>.jsonl.zst, losslessly and in the
    order received. Each file starts with an order-book snapshot, so it can be rebuilt on its own.
    Sequence breaks, disconnects and reconnects are written into the files as `event` records, and
    the book is re-anchored with a fresh snapshot. A health line per minute shows messages per
    second, bytes, gaps, reconnects and receive lag per symbol. Ctrl-C or SIGTERM finalizes every
    file within seconds; files left by a crash (`.partial`) are salvaged at the next start."""
    from midas.collector import run_collector
    from midas.logs import setup_logging
    from midas.collector.service import CollectorOptions

    settings = settings_from_options(
        symbols=symbols, venue=venue, streams=streams, data_dir=data_dir, ws_url=ws_url,
        rest_url=rest_url, file_rotation_hours=rotation_hours, file_rotation_gb=rotation_gb)
    if settings.log_dir is not None:
        # Also keep the collector's log (health lines, gaps, reconnects) in rotated files.
        level = logging.getLevelName(logging.getLogger("midas").getEffectiveLevel())
        setup_logging(level, settings.log_dir, "collector")
    summary = run_collector(settings, duration=duration,
                            options=CollectorOptions(health_interval_secs=health_every))
    table = Table(title=f"collected ({settings.venue}, {summary.seconds:.1f} s)")
    for col in ("messages", "records written", "MB written", "files", "gaps", "reconnects",
                "snapshots", "duplicates dropped", "malformed skipped", "salvaged"):
        table.add_column(col)
    table.add_row(
        ", ".join(f"{k} {v}" for k, v in summary.messages.items() if v) or "0",
        str(summary.records_written), f"{summary.bytes_written / 1e6:.2f}", str(len(summary.files)),
        str(summary.gaps), str(summary.reconnects), str(summary.snapshots), str(summary.duplicates),
        str(summary.malformed), str(len(summary.salvaged)))
    console = Console(width=140)
    console.print(table)
    for path in summary.files:
        console.print(f"  {path}", highlight=False)
    if summary.connections == 0:
        from midas.errors import CollectorError

        bases = " and ".join(settings.ws_bases())
        raise CollectorError(f"nothing collected: no connection to {bases} succeeded in "
                             f"{summary.seconds:.0f} s (the log above says why); check WS_URL and "
                             "the network, `midas doctor` tests both")


def register(app: typer.Typer) -> None:
    app.command("collect")(collect)
