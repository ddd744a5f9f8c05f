"""`midas ops ...`: run MIDAS under Prefect: a local server, a worker, deployments, the hourly job now,
and where every hour stands."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from midas.cli.common import require_data_dir, settings_from_options
from midas.errors import ConfigError, MidasError
from midas.layout import format_hour
from midas.logs import setup_logging

REPO_ROOT = Path(__file__).resolve().parents[2]
WORK_POOL = "midas-process"
HOURLY_DEPLOYMENT = "midas-hourly/midas-hourly"

ops = typer.Typer(help=("Operate MIDAS with Prefect: server, worker, deployments, the hourly job, "
                        "and the state of every hour."), no_args_is_help=True)


def _prefect() -> str:
    exe = Path(sys.executable).with_name("prefect")
    if exe.exists():
        return str(exe)
    found = shutil.which("prefect")
    if not found:
        raise ConfigError("the `prefect` command is not installed: run `make setup`")
    return found


def _prefect_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "midas")
    env.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    env.setdefault("MIDAS_HOME", str(REPO_ROOT))
    return env


def run_service(cmd: list[str], service: str, log_dir: Path | None) -> int:
    """Run a long-lived command, copying its output to stderr and, with LOG_DIR, to the rotated file
    `LOG_DIR/<service>/<service>.log`. SIGTERM and SIGINT are passed on as SIGINT."""
    setup_logging("INFO", log_dir, service)
    logger = logging.getLogger(f"midas.{service}")
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             bufsize=1, env=_prefect_env(), cwd=REPO_ROOT)

    def forward(signum, frame) -> None:
        # SIGINT is the graceful stop of both a Prefect server and a worker (a worker does not stop
        # on one SIGTERM, and a second signal makes it kill its flow runs), so each SIGTERM or SIGINT
        # received is passed on as one SIGINT.
        if child.poll() is None:
            child.send_signal(signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip():
                logger.info(line.rstrip("\n"))
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, env=_prefect_env(), cwd=REPO_ROOT)
    if done.returncode != 0:
        raise MidasError(f"`{' '.join(cmd)}` failed with exit code {done.returncode}")


@ops.command("server")
def server(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 only inside a container)."),
    port: int = typer.Option(4200, help="Port of the API and the UI (http://HOST:PORT)."),
) -> None:
    """Start a Prefect server with its UI at http://127.0.0.1:4200 (stop it with Ctrl-C)."""
    s = settings_from_options()
    raise typer.Exit(run_service([_prefect(), "server", "start", "--host", host, "--port", str(port)],
                                 "server", s.log_dir))


@ops.command("worker")
def worker(
    pool: str = typer.Option(WORK_POOL, help="Work pool to take flow runs from."),
    limit: int = typer.Option(4, help="Flow runs this worker runs at once."),
) -> None:
    """Start a worker that runs the collection, hourly and backfill flow runs of the pool.
    More workers (on this or other machines with the same DATA_DIR) share the work."""
    s = settings_from_options()
    raise typer.Exit(run_service([_prefect(), "worker", "start", "--pool", pool, "--type", "process",
                                  "--limit", str(limit)], "worker", s.log_dir))


def _require_prefect_server() -> None:
    """Deployments live on a Prefect server: without a reachable one, say so in one line (prefect
    itself would print a long traceback, or start a throwaway server that has no deployments)."""
    from midas.doctor import OK, check_prefect

    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        raise ConfigError("PREFECT_API_URL is not set: point it at your server, e.g. "
                          "PREFECT_API_URL=http://127.0.0.1:4200/api (`make server` starts one)")
    check = check_prefect(api_url)
    if check.status != OK:
        raise ConfigError(f"no Prefect server answers at PREFECT_API_URL: {check.found}; start one with "
                          "`make server` (or `docker compose up -d`), or fix PREFECT_API_URL")


@ops.command("deploy")
def deploy(pool: str = typer.Option(WORK_POOL, help="Work pool the deployments run on.")) -> None:
    """Create the process work pool (if it does not exist yet) and register the deployments of
    prefect.yaml: midas-collect, midas-hourly (every hour at :05 UTC), midas-symbol-hours and
    midas-backfill. Safe to run again after changing prefect.yaml."""
    _require_prefect_server()
    exists = subprocess.run([_prefect(), "work-pool", "inspect", pool], env=_prefect_env(), cwd=REPO_ROOT,
                            capture_output=True).returncode == 0
    if not exists:                          # an existing pool keeps the settings made on it in the UI
        _run([_prefect(), "work-pool", "create", pool, "--type", "process"])
    _run([_prefect(), "--no-prompt", "deploy", "--all"])


@ops.command("hourly-now")
def hourly_now() -> None:
    """Run the hourly job now on a worker (a run of the midas-hourly deployment) and wait for it.
    Needs the server (PREFECT_API_URL), the deployments (`midas ops deploy`) and a worker."""
    _require_prefect_server()
    _run([_prefect(), "deployment", "run", HOURLY_DEPLOYMENT, "--watch"])


@ops.command("status")
def status(
    data_dir: Path = typer.Option(None, help="Data directory (default: DATA_DIR)."),
    venue: str = typer.Option(None, help="binance (spot) or binance-futures (default: VENUE)."),
    symbols: str = typer.Option(None, help="Comma-separated symbols (default: SYMBOLS and every "
                                           "symbol with raw data)."),
    show_processed: bool = typer.Option(False, "--all", help="Also list hours already processed."),
) -> None:
    """Where every hour of every symbol stands (the configured ones and any other with raw data):
    waiting (still open or being written), pending, changed or stale (will be processed by the
    next hourly run) or processed."""
    from midas.layout import list_symbols
    from midas.scheduling import hour_statuses
    from midas.supervisor import running_collector_pid

    s = settings_from_options(data_dir=data_dir, venue=venue, symbols=symbols)
    require_data_dir(s)
    if symbols is None:
        s = s.model_copy(update={"symbols": sorted(set(s.symbols) | set(list_symbols(s.data_dir, s.venue)))})
    table = Table(title=f"MIDAS hours ({s.venue}, {s.data_dir})")
    for col in ("symbol", "hour (UTC)", "state", "why", "raw files"):
        table.add_column(col)
    counts: dict[str, int] = {}
    for st in hour_statuses(s):
        counts[st.state] = counts.get(st.state, 0) + 1
        if st.state != "processed" or show_processed:
            table.add_row(st.symbol, format_hour(st.hour), st.state, st.reason, str(len(st.raw_files)))
    console = Console(width=140)
    console.print(table)
    pid = running_collector_pid(s)
    console.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no raw hours yet")
    console.print(f"supervised collector: {'running, pid ' + str(pid) if pid else 'not running'}")


def register(app: typer.Typer) -> None:
    app.add_typer(ops, name="ops")
