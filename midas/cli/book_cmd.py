"""`midas rebuild` (the book stage alone) and `midas import` (existing recordings -> raw files)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from midas.cli.common import HourChoice, no_data_error, settings_from_options
from midas.layout import check_symbol, format_hour

_VENUE_HELP = "binance (spot) or binance-futures (default: VENUE)."
_DATA_HELP = "Root of raw/, clean/, features/ and midas.duckdb (default: DATA_DIR)."


def rebuild(
    hour: list[str] = typer.Option([], "--hour", help="An exchange-time UTC hour YYYY-MM-DDTHH; repeat for several."),
    start: Optional[str] = typer.Option(None, "--from", help="First hour of a range (with --to)."),
    end: Optional[str] = typer.Option(None, "--to", help="Last hour of a range, included."),
    venue: Optional[str] = typer.Option(None, help=_VENUE_HELP),
    symbols: Optional[str] = typer.Option(None, help="Comma-separated symbols (default: SYMBOLS)."),
    data_dir: Optional[Path] = typer.Option(None, help=_DATA_HELP),
) -> None:
    """Rebuild the exact order book from the raw files and write clean/book (the top levels on the
    SNAPSHOT_INTERVAL_MS grid while the book is provably in sync), clean/trades (deduplicated) and
    clean/gaps (every interval without a valid book, with its reason), one partition per
    exchange-time hour. Without --hour/--from, every hour the raw files cover is rebuilt, in time
    order. Bad lines in the raw files are reported with file and line and never stop the job.
    Use `midas process` to also compute features and update the catalog."""
    from midas.book import raw_hours, rebuild_hour

    settings = settings_from_options(venue=venue, symbols=symbols, data_dir=data_dir)
    choice = HourChoice(hour, start, end)
    console = Console(width=140)
    table = Table(title=f"book rebuild ({settings.venue}, {settings.data_dir})")
    for col in ("symbol", "hour", "book rows", "trades", "gaps", "problems", "started from",
                "hour complete", "seconds"):
        table.add_column(col)
    problems: list[str] = []
    for symbol in settings.symbols:
        symbol = check_symbol(symbol)
        todo, skipped = choice.pick(raw_hours(settings, settings.venue, symbol))
        if skipped:
            console.print(f"{symbol}: {skipped} hour(s) of the range have no raw data, skipped")
        for h in todo:
            r = rebuild_hour(settings, settings.venue, symbol, h)
            table.add_row(symbol, format_hour(h), str(r.rows["book"]), str(r.rows["trades"]),
                          ", ".join(f"{g['reason']}" for g in r.gaps) or "0", str(r.problem_count),
                          r.started_from, "yes" if r.complete else "no (data ends)",
                          f"{r.seconds:.2f}")
            problems += [f"{symbol} {format_hour(h)}: {p}" for p in r.problems[:10]]
    if not table.row_count:
        raise no_data_error("raw data" + (" in the hours asked" if choice.asked else ""),
                            settings.data_dir, settings.venue, settings.symbols)
    console.print(table)
    for p in problems[:50]:
        console.print(f"problem {p}", markup=False, highlight=False, soft_wrap=True)


def import_(
    recordings: list[Path] = typer.Argument(..., help="Recording files: `<local time ns> <JSON>` lines, plain or gzip."),
    venue: Optional[str] = typer.Option(None, help=_VENUE_HELP + " Must match the recording."),
    symbol: Optional[str] = typer.Option(None, help="Symbol to import (default: the recording's first)."),
    data_dir: Optional[Path] = typer.Option(None, help=_DATA_HELP),
) -> None:
    """Turn recordings you already have (the `<local receive time in ns> <message>` line format of
    hftbacktest's collector and similar recorders, with the REST depth snapshot as a bare line) into
    MIDAS raw files, one per local hour, ready for `midas rebuild` / `midas process`. Lines that are
    not Binance messages are reported with their line number and skipped."""
    from midas.importer import import_recording

    settings = settings_from_options(venue=venue, data_dir=data_dir)
    console = Console(width=140)
    for path in recordings:
        r = import_recording(path, settings.venue, settings.data_dir, symbol)
        counts = ", ".join(f"{n} {k}" for k, n in sorted(r.records.items()))
        console.print(f"{path}: {r.symbol} on {r.venue}: {counts}; {r.problem_count} bad lines; "
                      f"{r.seconds:.1f} s", markup=False, highlight=False, soft_wrap=True)
        for f in r.files:
            console.print(f"  wrote {f}", markup=False, highlight=False, soft_wrap=True)
        for p in r.problems[:20]:
            console.print(f"  problem {p}", markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("rebuild")(rebuild)
    app.command("import")(import_)
