"""`midas demo`, `midas doctor`, `midas inspect` and `midas chart`: the commands a new user runs first."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from midas.cli.common import require_data_dir, settings_from_options
from midas.demo.summary import midas_command

_STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def doctor(
    env_file: str = typer.Option(".env", help="The .env file to read (if it exists)."),
    timeout: float = typer.Option(3.0, help="Seconds to wait for each network endpoint."),
    docker: bool = typer.Option(True, "--docker/--no-docker", help="Also check for Docker."),
) -> None:
    """Check that this machine can run MIDAS, and say what to fix.

    Checks Python and the venv, the installed libraries, the configuration, the data directory and
    its free disk space, whether the WebSocket and REST endpoints answer (Binance, or the local
    exchange if WS_URL/REST_URL point at it), whether a Prefect API answers, and whether Docker is
    there. Exit code 1 if any check failed.
    """
    from midas.config import load_settings
    from midas.doctor import prefect_api_url, run_checks

    checks = run_checks(lambda: load_settings(env_file=env_file), prefect_url=prefect_api_url(),
                        timeout=timeout, docker=docker)
    table = Table(title="MIDAS doctor")
    table.add_column("check")
    table.add_column("status")
    table.add_column("found")
    table.add_column("what to do")
    for c in checks:
        table.add_row(c.name, f"[{_STATUS_STYLE[c.status]}]{c.status}[/]", c.found, c.remedy)
    Console(width=160).print(table)
    failed = [c.name for c in checks if c.status == "fail"]
    if failed:
        typer.secho(f"{len(failed)} check(s) failed: {', '.join(failed)}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo("MIDAS can run on this machine.")


def chart(
    symbol: str = typer.Option(..., "--symbol", "-s", help="Symbol, e.g. BTCUSDT."),
    hour: str = typer.Option(None, "--hour", help="Exchange-time hour (UTC), e.g. 2024-07-18T23 "
                             "(default: the symbol's latest processed hour)."),
    venue: str = typer.Option(None, help="binance or binance-futures (default: VENUE)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Data directory (default: DATA_DIR)."),
    out: Path = typer.Option(None, "--out", "-o",
                             help="PNG file to write (default: DATA_DIR/charts/<venue>/<SYMBOL>_<hour>.png)."),
) -> None:
    """Draw one processed hour of one symbol as a PNG.

    Panels: midprice with the bid-ask band, level-1 and 5-level imbalance, OFI with the day's
    cumulative OFI, and taker buy/sell volume. Stretches without a valid book are shaded, one
    colour per reason. Needs the hour's features (run the hourly processing first).
    """
    from midas.chart import write_chart
    from midas.errors import DataError
    from midas.inspection import latest_hour
    from midas.layout import check_symbol

    settings = settings_from_options(venue=venue, data_dir=data_dir)
    require_data_dir(settings)
    if hour is None:
        hour = latest_hour(settings.data_dir, "features", settings.venue, check_symbol(symbol))
        if hour is None:
            raise DataError(f"no processed hour of {check_symbol(symbol)} on {settings.venue} under "
                            f"{settings.data_dir}: process some first (`midas inspect` lists what exists)")
    path = write_chart(settings, settings.venue, symbol, hour, out)
    typer.echo(f"chart written: {path}")


def inspect_data(
    data_dir: Path = typer.Option(None, "--data-dir", help="Data directory (default: DATA_DIR)."),
    gaps: int = typer.Option(30, "--gaps", min=0, help="Gaps listed per symbol (the latest ones)."),
) -> None:
    """Show what is in the data directory, as tables.

    Raw files per venue, symbol and local hour (with files still being written); processed
    partitions per exchange-time hour with the rows of book, trades, gaps and features; every gap
    with its reason and duration; and the DuckDB catalog: its tables and which partitions it does not
    know yet.
    """
    from midas.inspection import render_inventory, take_inventory

    settings = settings_from_options(data_dir=data_dir)
    require_data_dir(settings)
    render_inventory(take_inventory(settings.data_dir), Console(width=160), max_gaps=gaps)


def demo(
    real: bool = typer.Option(False, "--real", help="Replay the real Binance recordings of "
                              "../shared/data/binance (futures, then spot) instead of a simulated market."),
    seconds: float = typer.Option(None, "--seconds", help="Collection time of the simulated run "
                                  "(default: DEMO_SECONDS, 120)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Where the demo writes (default: DEMO_DATA_DIR, "
                                  "else DATA_DIR)."),
    fresh: bool = typer.Option(True, "--fresh/--continue", help="Start from an empty data directory "
                               "(only data an earlier demo wrote is removed), or add to what is there."),
    speed: float = typer.Option(30.0, "--speed", help="Replay pace of --real (30 = thirty times faster "
                                "than recorded)."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Prefect's and MIDAS's log lines."),
    truth_dir: Path = typer.Option(None, "--truth-dir", hidden=True,
                                   help="The simulated exchange writes its ground truth here (for tests)."),
) -> None:
    """Run the whole pipeline on a local exchange and show what it produced.

    Starts a local Binance (two simulated futures symbols with one disconnect and one sequence gap,
    or with --real the recorded BTCUSDT futures and spot sessions, replayed fast), records it with
    the Prefect collection flow across several file rotations, rebuilds the order book on the 100 ms
    grid, computes the features, builds the DuckDB catalog, runs three example queries and draws a
    chart per symbol. Ends with a summary: messages, sizes, rows, gaps and their reasons, and the
    speed of every stage. Needs no internet; takes 2-4 minutes. Ctrl-C stops it cleanly and keeps
    what was written. Explore the result with `midas inspect`, `midas query` and `midas chart`.
    """
    from midas.demo import DemoOptions, run_demo

    settings = settings_from_options()
    options = DemoOptions(data_dir=data_dir or settings.demo_data_dir or settings.data_dir, real=real,
                          seconds=seconds if seconds is not None else settings.demo_seconds, fresh=fresh,
                          speed=speed, verbose=verbose, truth_dir=truth_dir)
    if options.seconds <= 0:
        raise typer.BadParameter("must be positive", param_hint="--seconds")
    console = Console(width=150)
    try:
        reports = run_demo(options, console)
    except KeyboardInterrupt:
        console.print(f"[yellow]stopped (Ctrl-C or SIGTERM)[/]: what was written so far stays in {options.data_dir} "
                      f"(`{midas_command()} inspect --data-dir {options.data_dir}` shows it)")
        raise
    data = Path(options.data_dir)
    console.rule("[bold]done")
    console.print(f"everything is in {data.resolve()}; try:")
    midas = midas_command()
    console.print(f"  {midas} inspect --data-dir {data}")
    if reports and reports[0].hours:
        symbol, hour, _ = reports[0].hours[-1]
        console.print(f"  {midas} chart --data-dir {data} --venue {reports[0].venue} --symbol {symbol} "
                      f"--hour {hour:%Y-%m-%dT%H}")


def _help(fn) -> str:
    """The docstring as help text: each paragraph on one line, so the terminal wraps it, not the source."""
    import inspect

    paragraphs = inspect.cleandoc(fn.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def register(app: typer.Typer) -> None:
    app.command("demo", help=_help(demo))(demo)
    app.command("inspect", help=_help(inspect_data))(inspect_data)
    app.command("doctor", help=_help(doctor))(doctor)
    app.command("chart", help=_help(chart))(chart)
