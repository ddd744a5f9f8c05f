"""`midas exchange`: a local Binance (simulated market or replayed recording) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from midas.errors import ConfigError, ExchangeError
from midas.exchange.faults import Faults
from midas.exchange.server import ExchangeConfig, ExchangeServer
from midas.supervisor import process_alive


def exchange(
    files: Optional[list[Path]] = typer.Argument(None, help="Recordings to replay (with --replay).", show_default=False),
    venue: Optional[str] = typer.Option(None, help="binance (spot) or binance-futures. Default: VENUE, or the recording's venue with --replay."),
    symbols: Optional[str] = typer.Option(None, help="Symbols to simulate, comma-separated (default: SYMBOLS)."),
    port: int = typer.Option(8765, help="Port for WebSocket and REST; 0 picks a free one."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    seed: int = typer.Option(7, help="Random seed: the same seed gives the same simulated market."),
    truth_dir: Optional[Path] = typer.Option(None, help="Write the true book at every grid time, every trade and every message sent per connection here."),
    truth_depth: int = typer.Option(10, help="Levels per side in the truth book (ORDER_BOOK_DEPTH)."),
    replay: bool = typer.Option(False, "--replay", help="Serve the recordings given as arguments (`<local ts ns> <json>` lines, gzip or plain) instead of simulating."),
    speed: float = typer.Option(1.0, help="Replay pace: 1 = as recorded, 10 = ten times faster, 0 = as fast as the client reads."),
    clock_offset_ms: int = typer.Option(1300, help="The exchange clock (E, T) runs this far ahead of this machine's clock."),
    tick_jitter_ms: int = typer.Option(0, help="Add a random 0..N ms to each diff's E (below 100), so E does not sit on the 100 ms grid."),
    ping_interval_secs: Optional[float] = typer.Option(None, help="Server ping interval (default: spot 20 s, futures 180 s)."),
    weight_budget: Optional[int] = typer.Option(None, help="REST weight per minute before 429 (default: spot 6000, futures 2400)."),
    message_limit: Optional[int] = typer.Option(None, help="Client messages per second before disconnect (default: spot 5, futures 10)."),
    disconnect_every_secs: float = typer.Option(0, help="Fault: drop every connection every N s (no close frame)."),
    drop_diffs: int = typer.Option(0, help="Fault: leave out N consecutive depth diffs per symbol (a sequence gap) ..."),
    drop_every_secs: float = typer.Option(5.0, help="... every time a connection gets N s older."),
    duplicate_every: int = typer.Option(0, help="Fault: send every Nth message twice."),
    malformed_every: int = typer.Option(0, help="Fault: send a malformed frame (bad JSON, wrong types, missing fields) before every Nth message."),
    stall_secs: float = typer.Option(0, help="Fault: send nothing for N s, connection kept open ..."),
    stall_after_secs: float = typer.Option(5.0, help="... once a connection is N s old."),
    max_connection_age_secs: float = typer.Option(0, help="Fault: close each connection at this age (Binance's 24 h rule, shortened)."),
    rest_fail_status: int = typer.Option(429, help="Fault: HTTP status of failed snapshot requests (429, 418, 500, 503)."),
    rest_fail_first: int = typer.Option(0, help="Fault: fail the first N snapshot requests."),
    rest_fail_rate: float = typer.Option(0.0, help="Fault: fail this fraction (0-1) of later snapshot requests."),
    rest_retry_after_secs: int = typer.Option(1, help="Retry-After of injected 429/418 answers."),
    rest_slow_secs: float = typer.Option(0.0, help="Fault: answer slow snapshot requests N s late ..."),
    rest_slow_first: int = typer.Option(0, help="... the first N requests ..."),
    rest_slow_rate: float = typer.Option(0.0, help="... and this fraction (0-1) of later ones."),
    stop_with_pid: Optional[int] = typer.Option(None, help="Stop when the process with this PID ends (the demo and the tests pass their own, so an exchange never outlives them)."),
) -> None:
    """Run a local Binance on 127.0.0.1: a simulated market (or a replayed recording) served with
    Binance's WebSocket streams and REST depth snapshot on one port, with faults on demand.

    Point the collector at it with WS_URL and REST_URL set to the printed URLs. Stop with Ctrl-C.
    """
    from midas.config import load_settings

    if replay and not files:
        raise ConfigError("--replay needs at least one recording file, e.g. --replay data.txt.gz")
    if files and not replay:
        raise ConfigError(f"{files[0]} given without --replay: add --replay to serve recordings")
    if replay and symbols:
        raise ConfigError("--symbols does not apply to --replay: the recordings' symbols are served")
    try:
        faults = Faults(
            disconnect_every_secs=disconnect_every_secs, drop_diffs=drop_diffs,
            drop_every_secs=drop_every_secs, duplicate_every=duplicate_every,
            malformed_every=malformed_every, stall_secs=stall_secs, stall_after_secs=stall_after_secs,
            max_connection_age_secs=max_connection_age_secs, rest_fail_status=rest_fail_status,
            rest_fail_first=rest_fail_first, rest_fail_rate=rest_fail_rate,
            rest_retry_after_secs=rest_retry_after_secs, rest_slow_secs=rest_slow_secs,
            rest_slow_first=rest_slow_first, rest_slow_rate=rest_slow_rate)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    symbol_list: list[str] = []
    if not replay:
        settings = load_settings(venue=venue, symbols=symbols)
        venue, symbol_list = settings.venue, settings.symbols
    elif venue is not None:
        load_settings(venue=venue)   # validates the name
    try:
        config = ExchangeConfig(
            venue=venue, symbols=symbol_list or ["BTCUSDT"], seed=seed, faults=faults,
            truth_dir=truth_dir, replay=list(files) if replay else None, speed=speed,
            clock_offset_ms=clock_offset_ms, tick_jitter_ms=tick_jitter_ms, host=host, port=port,
            truth_depth=truth_depth,
            ping_interval_secs=ping_interval_secs, weight_budget=weight_budget,
            message_limit=message_limit)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    asyncio.run(_serve(config, stop_with_pid))


def _say(line: str) -> None:
    """Print a status line; when the reader is gone (a dead parent held the pipe), send output to
    /dev/null instead of failing, so the exchange still stops cleanly."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


async def _stop_when_gone(pid: int, stop: asyncio.Event) -> None:
    """Set `stop` once `pid` has ended. A SIGKILLed parent runs no cleanup, so the exchange must
    notice by itself; a changed parent PID also counts, since a PID can be reused."""
    parent_at_start = os.getppid()
    while not stop.is_set():
        if not process_alive(pid) or (parent_at_start == pid and os.getppid() != pid):
            stop.set()
            _say(f"midas exchange: process {pid} ended, stopping")
            return
        await asyncio.sleep(0.5)


async def _serve(config: ExchangeConfig, stop_with_pid: int | None = None) -> None:
    server = ExchangeServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except OSError as e:
        raise ExchangeError(f"cannot listen on {config.host}:{config.port}: {e.strerror or e} "
                            "(another program uses the port? --port 0 picks a free one)") from None
    what = (f"replaying {len(config.replay)} recording(s) at speed {config.speed:g}" if config.replay
            else f"simulating {','.join(server.symbols)} (seed {config.seed})")
    base = f"{config.host}:{server.port}"
    print(f"midas exchange: {server.venue} {what}", flush=True)
    print(f"WS_URL=ws://{base}", flush=True)
    print(f"REST_URL=http://{base}", flush=True)
    watcher = asyncio.create_task(_stop_when_gone(stop_with_pid, stop)) if stop_with_pid else None
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        await server.stop()
        stats = server.stats()
        _say("midas exchange: stopped " + " ".join(f"{k}={v}" for k, v in stats.items()))


def register(app: typer.Typer) -> None:
    app.command("exchange")(exchange)
