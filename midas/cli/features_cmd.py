"""`midas process`, `midas features`, `midas catalog rebuild` and `midas query`."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Optional

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.table import Table

from midas.cli.common import HourChoice, no_data_error, require_data_dir, settings_from_options
from midas.config import Settings
from midas.errors import ConfigError
from midas.layout import format_hour

catalog_app = typer.Typer(help="The DuckDB catalog DATA_DIR/midas.duckdb: views over all data.",
                          no_args_is_help=True)

_VENUE_HELP = "binance (spot) or binance-futures (default: VENUE)."
_SYMBOLS_HELP = "Comma-separated symbols (default: SYMBOLS)."
_DATA_HELP = "Root of raw/, clean/, features/ and midas.duckdb (default: DATA_DIR)."
_HOUR_HELP = "An exchange-time UTC hour YYYY-MM-DDTHH; repeat for several (default: every hour, see the text above)."


def _settings(venue: str | None, symbols: str | None, data_dir: Path | None) -> Settings:
    return settings_from_options(venue=venue, symbols=symbols, data_dir=data_dir)


def process(
    hour: list[str] = typer.Option([], "--hour", help=_HOUR_HELP),
    start: Optional[str] = typer.Option(None, "--from", help="First hour of a range (with --to)."),
    end: Optional[str] = typer.Option(None, "--to", help="Last hour of a range, included."),
    venue: Optional[str] = typer.Option(None, help=_VENUE_HELP),
    symbols: Optional[str] = typer.Option(None, help=_SYMBOLS_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=_DATA_HELP),
) -> None:
    """Turn recorded raw data into research data, hour by hour: rebuild the exact book on the grid
    (clean/book, clean/trades, clean/gaps), compute the features and register everything in the
    catalog. Without --hour/--from, every hour the raw files cover is processed; hours of a
    --from/--to range without raw data are skipped. Re-running an hour replaces its partitions
    whole, and the hour is recorded as processed for the hourly job and `midas ops status`."""
    from midas.book import raw_hours
    from midas.scheduling import process_and_record

    settings = _settings(venue, symbols, data_dir)
    choice = HourChoice(hour, start, end)
    done = 0
    for symbol in settings.symbols:
        todo, skipped = choice.pick(raw_hours(settings, settings.venue, symbol))
        if skipped:
            typer.echo(f"{settings.venue} {symbol}: {skipped} hour(s) of the range have no raw data, skipped")
        for h in todo:
            typer.echo(process_and_record(settings, settings.venue, symbol, h).line())
            done += 1
    if not done:
        raise no_data_error("raw data" + (" in the hours asked" if choice.asked else ""),
                            settings.data_dir, settings.venue, settings.symbols)


def features(
    hour: list[str] = typer.Option([], "--hour", help=_HOUR_HELP),
    start: Optional[str] = typer.Option(None, "--from", help="First hour of a range (with --to)."),
    end: Optional[str] = typer.Option(None, "--to", help="Last hour of a range, included."),
    venue: Optional[str] = typer.Option(None, help=_VENUE_HELP),
    symbols: Optional[str] = typer.Option(None, help=_SYMBOLS_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=_DATA_HELP),
) -> None:
    """Recompute only the features of hours whose clean book is already built (e.g. after changing
    OFI_WINDOW or TIME_BUCKET_MS), and register them in the catalog. Without --hour/--from, every
    hour with a clean/book partition is done, oldest first."""
    from midas.catalog import register_hour
    from midas.features import compute_features_hours, partition_hours

    settings = _settings(venue, symbols, data_dir)
    choice = HourChoice(hour, start, end)
    done = 0
    for symbol in settings.symbols:
        todo, skipped = choice.pick(partition_hours(settings.data_dir, "book", settings.venue, symbol))
        if skipped:
            typer.echo(f"{settings.venue} {symbol}: {skipped} hour(s) of the range have no clean/book "
                       "partition, skipped")
        done += len(todo)

        def written(result) -> None:
            register_hour(settings, settings.venue, result.symbol, result.hour)
            typer.echo(f"{settings.venue} {result.symbol} {format_hour(result.hour)}: "
                       f"features={result.rows} in {result.seconds:.2f} s")

        # consecutive hours of a day are computed in one pass (midas.features.hours)
        compute_features_hours(settings, settings.venue, symbol, todo, on_written=written)
    if not done:
        raise no_data_error("clean/book partitions (run `midas process` or `midas rebuild` first)",
                            settings.data_dir, settings.venue, settings.symbols)


@catalog_app.command("rebuild")
def catalog_rebuild(
    data_dir: Optional[Path] = typer.Option(None, help=_DATA_HELP),
) -> None:
    """Recreate DATA_DIR/midas.duckdb from the files: the views book, trades, gaps, features and
    the tables partitions and raw_files. Safe at any time; deleting the catalog loses nothing."""
    from midas.catalog import rebuild_catalog

    settings = settings_from_options(data_dir=data_dir)
    require_data_dir(settings)
    summary = rebuild_catalog(settings)
    typer.echo(f"catalog {summary.path}: {summary.partitions} partitions, {summary.raw_files} raw files "
               f"registered in {summary.seconds:.2f} s")


def _write_output(table: pa.Table, fmt: str, output: Path | None) -> None:
    if fmt == "parquet":
        if output is None:
            raise ConfigError("--format parquet needs --output FILE")
        output.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, output, compression="zstd")
        return
    if fmt == "csv":
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        data = buffer.getvalue()
    elif fmt == "json":
        data = orjson.dumps(table.to_pylist(), option=orjson.OPT_INDENT_2 | orjson.OPT_NAIVE_UTC,
                            default=str) + b"\n"
    else:
        raise ConfigError(f"--format {fmt!r} is unknown: use table, csv, json or parquet")
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(data)


def query(
    sql: str = typer.Argument(..., help="One SQL query, e.g. \"SELECT count(*) FROM features\"."),
    fmt: str = typer.Option("table", "--format", help="table (on screen), csv, json or parquet."),
    output: Optional[Path] = typer.Option(None, "--output", help="Write the result to this file."),
    max_rows: int = typer.Option(100, help="Rows shown by --format table (the rest is counted)."),
    data_dir: Optional[Path] = typer.Option(None, help=_DATA_HELP),
) -> None:
    """Run SQL on the catalog: views book, trades, gaps, features (with columns venue, symbol, date,
    hour; filter on them to read only the matching files) and tables partitions, raw_files.
    The catalog is opened read-only, so queries run while hourly jobs write. Only queries run
    (SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN, TABLE): COPY, EXPORT, ATTACH,
    INSTALL/LOAD, SET, PRAGMA, CALL are refused; write results with --output."""
    from midas.catalog import query_arrow

    if fmt not in ("table", "csv", "json", "parquet"):
        raise ConfigError(f"--format {fmt!r} is unknown: use table, csv, json or parquet")
    if not sql.strip():
        raise ConfigError("the query is empty: give one SQL query, e.g. \"SELECT count(*) FROM features\"")
    table = query_arrow(settings_from_options(data_dir=data_dir), sql)
    if fmt != "table":
        _write_output(table, fmt, output)
        return
    if output is not None:
        raise ConfigError("--output needs --format csv, json or parquet")
    view = Table(show_lines=False)
    for name in table.column_names:
        view.add_column(name)
    shown = table.slice(0, max_rows)
    for row in zip(*(column.to_pylist() for column in shown.columns)):
        view.add_row(*("NULL" if v is None else str(v) for v in row))
    console = Console(width=max(120, 14 * len(table.column_names)))
    console.print(view)
    more = f" (first {max_rows} shown)" if table.num_rows > max_rows else ""
    console.print(f"{table.num_rows} rows{more}")


def register(app: typer.Typer) -> None:
    app.command("process")(process)
    app.command("features")(features)
    app.add_typer(catalog_app, name="catalog")
    app.command("query")(query)
