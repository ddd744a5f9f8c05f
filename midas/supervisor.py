"""Run the collector in a child process and watch it: what the Prefect collection flow calls.

The collector runs as `python -m midas.supervisor <settings json> <seconds|forever> <health secs>`
so that a crash
of any kind (an exception, the OOM killer, `kill -9`) ends only the child. `run_collector_process`
then raises `CollectorError` naming the exit code or signal, and the caller (the flow's task
retries) starts a new child, which salvages the `.partial` files the dead one left (every complete
record is kept: raw files stay valid).

The child's log lines (`midas.*` loggers, on stderr) are re-emitted in the parent under the same
logger name and level, so they reach the Prefect UI; its per-minute health reports arrive as
`MIDAS-HEALTH <json>` lines on stdout and are handed to `on_health`. The child's pid is kept in
`DATA_DIR/state/collector.pid` while it runs. When the parent goes away the child stops cleanly.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

from midas.config import Settings, load_settings
from midas.errors import CollectorError
from midas.logs import log_kv

log = logging.getLogger("midas.supervisor")

HEALTH_PREFIX = "MIDAS-HEALTH "
PID_FILE = "collector.pid"
PREVIOUS_COLLECTOR_WAIT_SECS = 60.0
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
           "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}


@dataclass
class CollectorRun:
    """How one child collector process ended."""

    pid: int
    exit_code: int
    seconds: float
    health_reports: int


def pid_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "state" / PID_FILE


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:                                    # a zombie (exited, not yet reaped) is not running
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" not in status


def running_collector_pid(settings: Settings) -> int | None:
    """The pid of the supervised collector if one is alive, else None."""
    try:
        pid = int(pid_file(settings).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def _wait_for_previous_collector(settings: Settings) -> None:
    """Two collectors must never write the same raw files: give a previous one (e.g. orphaned by a
    killed flow run, it stops within seconds) time to finish, else refuse to start."""
    deadline = time.monotonic() + PREVIOUS_COLLECTOR_WAIT_SECS
    while (pid := running_collector_pid(settings)) is not None:
        if time.monotonic() >= deadline:
            raise CollectorError(
                f"another collector (pid {pid}, {pid_file(settings)}) is still running on "
                f"{settings.data_dir}; stop it first (two collectors would write the same raw files)")
        time.sleep(0.5)


def _forward_log_line(line: str) -> None:
    """Re-emit a child log line (`date time LEVEL logger message`) under its own logger and level."""
    parts = line.split(" ", 4)
    if len(parts) == 5 and parts[2] in _LEVELS and parts[3].startswith("midas"):
        logging.getLogger(parts[3]).log(_LEVELS[parts[2]], parts[4])
    elif line.strip():
        logging.getLogger("midas.collector").warning(line)


def _pump(stream: IO[str], handle: Callable[[str], None]) -> None:
    for raw in stream:
        handle(raw.rstrip("\n"))


def run_collector_process(settings: Settings, until: float | None = None,
                          on_health: Callable[[str, dict[str, Any]], None] | None = None,
                          health_interval_secs: float = 60.0) -> CollectorRun:
    """Run the collector in a child process until `until` (epoch seconds; None = forever), with a
    health report every `health_interval_secs`. Raises CollectorError when the child dies any other
    way. If this call is interrupted (the flow run is cancelled), the child is stopped cleanly."""
    seconds = "forever" if until is None else f"{max(0.0, until - time.time()):.3f}"
    payload = json.dumps(settings.model_dump(mode="json"))
    cmd = [sys.executable, "-m", "midas.supervisor", payload, seconds, str(float(health_interval_secs))]
    started = time.monotonic()
    reports = 0

    def handle_stdout(line: str) -> None:
        nonlocal reports
        if line.startswith(HEALTH_PREFIX):
            reports += 1
            try:
                report = json.loads(line[len(HEALTH_PREFIX):])
                if on_health is not None:
                    on_health(report.pop("line"), report)
            except Exception as e:  # a bad report or callback must not stop reading the child's output
                log_kv(log, "health report not handled", logging.WARNING, error=repr(e))
        elif line.strip():
            logging.getLogger("midas.collector").info(line)

    _wait_for_previous_collector(settings)
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             bufsize=1, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    path = pid_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{child.pid}\n")
    log_kv(log, "collector process started", pid=child.pid, symbols=",".join(settings.symbols),
           venue=settings.venue, seconds=seconds)
    # The pumps run in copies of the caller's context, so log records they emit belong to the
    # caller's Prefect flow/task run and reach the UI.
    pumps = [threading.Thread(target=contextvars.copy_context().run,
                              args=(_pump, child.stdout, handle_stdout), daemon=True),
             threading.Thread(target=contextvars.copy_context().run,
                              args=(_pump, child.stderr, _forward_log_line), daemon=True)]
    for t in pumps:
        t.start()
    try:
        child.wait()
    finally:
        if child.poll() is None:            # the caller was interrupted: stop the child cleanly
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for t in pumps:
            t.join(timeout=10)
        if path.exists() and path.read_text().strip() == str(child.pid):
            path.unlink()
    code = child.returncode
    run = CollectorRun(child.pid, code, time.monotonic() - started, reports)
    if code == 0:
        log_kv(log, "collector process ended", pid=child.pid, exit_code=code,
               seconds=f"{run.seconds:.1f}", health_reports=reports)
        return run
    how = f"was killed by signal {-code} ({signal.Signals(-code).name})" if code < 0 else \
        f"exited with code {code}"
    raise CollectorError(
        f"collector process {child.pid} {how} after {run.seconds:.1f} s; its raw files stay valid "
        "and the next start salvages the .partial files it left")


# The child ---------------------------------------------------------------------------------------

def _child_main(argv: list[str]) -> int:
    from midas.collector import CollectorOptions, run_collector
    from midas.logs import setup_logging

    settings = load_settings(env_file=None, **json.loads(argv[0]))
    duration = None if argv[1] == "forever" else float(argv[1])
    options = CollectorOptions(health_interval_secs=float(argv[2]))
    setup_logging(settings.log_level, settings.log_dir, "collector")
    stop = threading.Event()
    parent = os.getppid()

    def stop_on_signal(signum, frame) -> None:
        stop.set()

    signal.signal(signal.SIGINT, stop_on_signal)
    signal.signal(signal.SIGTERM, stop_on_signal)

    def watch_parent() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                log_kv(log, "supervisor went away, stopping the collector", parent=parent)
                stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()

    def on_health(report: Any) -> None:
        data = report.as_dict() if hasattr(report, "as_dict") else dict(report)
        data["line"] = report.line() if hasattr(report, "line") else json.dumps(data)
        sys.stdout.write(HEALTH_PREFIX + json.dumps(data, default=str) + "\n")
        sys.stdout.flush()

    try:
        run_collector(settings, duration=duration, stop_event=stop, on_health=on_health, options=options)
    except CollectorError as e:
        log_kv(log, "collector failed", logging.ERROR, error=e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
