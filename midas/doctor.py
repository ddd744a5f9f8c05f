"""`midas doctor`: a preflight that checks what MIDAS needs and says in plain words what to fix.

Each check returns a `Check` (name, status, what was found, what to do). The checks never raise:
a problem becomes a `fail` (MIDAS cannot work until it is fixed) or a `warn` (it works, but not
as well as it could). Network checks use short timeouts, so the doctor answers within seconds
even when every endpoint is down.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from midas.config import Settings, load_settings
from midas.errors import ConfigError

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_FREE_BYTES = 1 << 30          # below this MIDAS cannot record for long: fail
LOW_FREE_BYTES = 10 << 30         # below this a day of 24/7 recording of a few symbols is at risk: warn
REQUIRED_MODULES = ("prefect", "websockets", "zstandard", "duckdb", "pyarrow", "polars", "pydantic",
                    "pydantic_settings", "orjson", "typer", "rich", "matplotlib", "numpy")


@dataclass(frozen=True)
class Check:
    name: str
    status: str      # ok, warn or fail
    found: str       # what the check saw
    remedy: str = "" # what to do about it (empty when nothing needs doing)


# Python and packages -----------------------------------------------------------------------------

def check_python(version: tuple[int, int] | None = None, prefix: str | None = None,
                 base_prefix: str | None = None) -> Check:
    """Python 3.11 or newer, running inside a virtual environment."""
    major, minor = version or sys.version_info[:2]
    prefix = prefix if prefix is not None else sys.prefix
    base_prefix = base_prefix if base_prefix is not None else sys.base_prefix
    found = f"Python {major}.{minor} at {prefix}"
    if (major, minor) < (3, 11):
        return Check("python", FAIL, found,
                     "MIDAS needs Python 3.11 or newer: install it and run `make setup` again "
                     "(PY=python3.11 make setup picks the interpreter)")
    if prefix == base_prefix:
        return Check("python", WARN, found + " (not a virtual environment)",
                     "run MIDAS from its venv: `make setup`, then use .venv/bin/midas")
    return Check("python", OK, found + " (virtual environment)")


def check_packages(modules: tuple[str, ...] = REQUIRED_MODULES) -> Check:
    """Every library MIDAS imports is installed."""
    from importlib import metadata
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        return Check("packages", FAIL, "missing: " + ", ".join(missing),
                     "install them with `make setup` (or .venv/bin/pip install -e '.[dev]')")
    versions = []
    for m in ("prefect", "duckdb", "pyarrow"):
        try:
            versions.append(f"{m} {metadata.version(m)}")
        except metadata.PackageNotFoundError:
            versions.append(m)
    return Check("packages", OK, f"all {len(modules)} libraries found ({', '.join(versions)})")


# Configuration and disk --------------------------------------------------------------------------

def check_config(load: Callable[[], Settings] = load_settings) -> tuple[Check, Settings | None]:
    """The settings load; on failure the ConfigError text names the bad variable."""
    try:
        settings = load()
    except ConfigError as e:
        return Check("configuration", FAIL, str(e).replace("\n", " "),
                     "fix the named variable in .env or the environment (`midas config` shows every "
                     "value and where it came from)"), None
    return Check("configuration", OK,
                 f"venue {settings.venue}, symbols {','.join(settings.symbols)}, "
                 f"streams {','.join(settings.streams)}"), settings


def _existing_ancestor(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_data_dir(data_dir: Path, disk_usage: Callable = shutil.disk_usage,
                   access: Callable[[Path, int], bool] = os.access) -> Check:
    """DATA_DIR exists (or can be created) and is writable, with enough free disk space."""
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        return Check("data directory", FAIL, f"{data_dir} exists but is not a directory",
                     "set DATA_DIR to a directory, or move that file away")
    base = data_dir if data_dir.is_dir() else _existing_ancestor(data_dir)
    if not access(base, os.W_OK | os.X_OK):
        return Check("data directory", FAIL, f"{base} is not writable",
                     f"give your user write access to {base} or set DATA_DIR to a writable place")
    free = disk_usage(base).free
    where = f"{data_dir}" + ("" if data_dir.is_dir() else f" (will be created under {base})")
    found = f"{where}, {format_bytes(free)} free"
    if free < MIN_FREE_BYTES:
        return Check("data directory", FAIL, found,
                     "free disk space or set DATA_DIR to a larger disk: recording needs at least "
                     f"{format_bytes(MIN_FREE_BYTES)}")
    if free < LOW_FREE_BYTES:
        return Check("data directory", WARN, found,
                     "fine for the demo; for 24/7 recording keep at least "
                     f"{format_bytes(LOW_FREE_BYTES)} free or set DATA_DIR to a larger disk")
    return Check("data directory", OK, found)


def check_log_dir(log_dir: Path | None) -> Check | None:
    """LOG_DIR, when set, exists (or can be created) and is writable; None when it is not set."""
    if log_dir is None:
        return None
    log_dir = Path(log_dir)
    if log_dir.exists() and not log_dir.is_dir():
        return Check("log directory", FAIL, f"{log_dir} exists but is not a directory",
                     "set LOG_DIR to a directory, or unset it to log to the terminal only")
    base = log_dir if log_dir.is_dir() else _existing_ancestor(log_dir)
    if not os.access(base, os.W_OK | os.X_OK):
        return Check("log directory", FAIL, f"{base} is not writable",
                     f"give your user write access to {base} or set LOG_DIR to a writable place")
    return Check("log directory", OK, f"{log_dir}" + ("" if log_dir.is_dir() else f" (will be created under {base})"))


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


# Network endpoints -------------------------------------------------------------------------------

def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme in ("wss", "https") else 80
    return parts.hostname or "", parts.port or default


def check_websocket(ws_url: str, stream_url: str | None = None, timeout: float = 3.0,
                    name: str = "websocket endpoint", variable: str = "WS_URL") -> Check:
    """A WebSocket handshake with `stream_url` (a combined-stream URL under WS_URL) completes within
    `timeout` seconds; the connection is closed right after, nothing is subscribed for longer."""
    from websockets.exceptions import InvalidHandshake, InvalidStatus
    from websockets.sync.client import connect

    url = stream_url or ws_url
    try:
        with connect(url, open_timeout=timeout, close_timeout=timeout) as ws:
            ws.close()      # the handshake was the check; leave politely
    except InvalidStatus as e:
        return Check(name, FAIL, f"{url}: HTTP {e.response.status_code} instead of a "
                     "WebSocket handshake", f"{variable} must be the WebSocket base only, e.g. "
                     "wss://fstream.binance.com (MIDAS adds /stream?streams=...)")
    except (InvalidHandshake, EOFError) as e:
        return Check(name, FAIL, f"{url}: not a WebSocket server ({e.__class__.__name__})",
                     f"{variable} points at something that does not speak WebSocket: use the venue's "
                     "stream base or the local exchange's ws:// address")
    except (OSError, TimeoutError) as e:
        return Check(name, FAIL, f"{ws_url}: no answer ({_reason(e)})",
                     _endpoint_remedy(ws_url, variable))
    return Check(name, OK, f"{ws_url}: WebSocket handshake completed")


def check_websockets(settings: Settings, timeout: float = 3.0) -> list[Check]:
    """One handshake per WebSocket base the configured streams need (USD-M futures routes depth and
    bookTicker to /public and trades to /market), each asking for one of the streams it carries."""
    from midas.venues import stream_names

    by_base = settings.ws_bases()
    checks = []
    for base, kinds in by_base.items():
        stream = stream_names(settings.symbols[0], [kinds[0]])[0]
        url = settings.venue_spec.combined_stream_url(base, [stream])
        if len(by_base) == 1:
            name, variable = "websocket endpoint", "WS_URL"
        else:
            name = f"websocket endpoint ({', '.join(kinds)})"
            variable = "WS_MARKET_URL" if kinds == ["trade"] else "WS_PUBLIC_URL"
        checks.append(check_websocket(base, url, timeout, name, variable))
    return checks


def check_rest(rest_url: str, depth_path: str, symbol: str, timeout: float = 3.0) -> Check:
    """The REST base answers a small depth request (limit 5, the lightest on both venues)."""
    parts = urlsplit(rest_url)
    host, port = _host_port(rest_url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = f"{parts.path.rstrip('/')}{depth_path}?symbol={symbol}&limit=5"
    conn = conn_cls(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "midas-doctor"})
        resp = conn.getresponse()
        body = resp.read(300).decode("utf-8", "replace")
    except OSError as e:
        return Check("rest endpoint", FAIL, f"{rest_url}: no answer ({_reason(e)})",
                     _endpoint_remedy(rest_url, "REST_URL"))
    finally:
        conn.close()
    if resp.status == 200 and '"lastUpdateId"' in body:
        return Check("rest endpoint", OK, f"{rest_url}: depth snapshot of {symbol} answered (HTTP 200)")
    if resp.status in (418, 429):
        return Check("rest endpoint", FAIL, f"{rest_url}: HTTP {resp.status} (request budget exceeded)",
                     "wait for the ban to lift (Retry-After) and lower the number of symbols or "
                     "restarts; never loop on snapshot requests")
    return Check("rest endpoint", WARN, f"{rest_url}: HTTP {resp.status} for {symbol} ({body[:120]})",
                 f"the server answers but not with a depth snapshot: check that {symbol} exists on "
                 "this venue and that REST_URL is the base URL only (no path)")


def _reason(e: OSError) -> str:
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(e, socket.gaierror):
        return "host name not found"
    return e.strerror or e.__class__.__name__


def _endpoint_remedy(url: str, var: str) -> str:
    host, _ = _host_port(url)
    if host in ("127.0.0.1", "localhost", "::1"):
        return (f"nothing listens at {url}: start the local exchange (`midas exchange`) or point "
                f"{var} at it")
    return (f"check the internet connection and firewall, or run offline against the local exchange "
            f"(`midas exchange`, then set WS_URL and REST_URL to its address)")


def check_prefect(api_url: str | None, timeout: float = 3.0) -> Check:
    """A Prefect API answers `GET <PREFECT_API_URL>/health`, or none is configured (temporary server)."""
    if not api_url:
        return Check("prefect api", WARN, "PREFECT_API_URL is not set: each flow run starts a "
                     "temporary local server (fine for `make demo` and tests)",
                     "for 24/7 operation start `make server` (or `docker compose up -d`) and set "
                     "PREFECT_API_URL=http://127.0.0.1:4200/api")
    parts = urlsplit(api_url)
    host, port = _host_port(api_url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(host, port, timeout=timeout)
    try:
        conn.request("GET", f"{parts.path.rstrip('/')}/health")
        resp = conn.getresponse()
        body = resp.read(100).decode("utf-8", "replace").strip()
    except OSError as e:
        return Check("prefect api", FAIL, f"{api_url}: no answer ({_reason(e)})",
                     "start the Prefect server (`make server` or `docker compose up -d`), "
                     "or unset PREFECT_API_URL to use a temporary server")
    finally:
        conn.close()
    if resp.status == 200 and body == "true":
        return Check("prefect api", OK, f"{api_url}: healthy")
    return Check("prefect api", FAIL, f"{api_url}/health: HTTP {resp.status} {body[:80]!r}",
                 "PREFECT_API_URL must end in /api (e.g. http://127.0.0.1:4200/api); "
                 "check the server's logs")


def prefect_api_url() -> str | None:
    """The API URL Prefect will use (environment, .env or active Prefect profile), read afresh."""
    from prefect.settings import Settings as PrefectSettings

    return PrefectSettings().api.url


def check_docker(which: Callable[[str], str | None] = shutil.which, timeout: float = 5.0) -> Check:
    """Docker is only needed for `docker compose` operation: its absence is a warning."""
    path = which("docker")
    if path is None:
        return Check("docker", WARN, "docker not found",
                     "only needed to run MIDAS with docker compose; install Docker Engine with the "
                     "compose plugin, or run the services directly (see the README)")
    try:
        proc = subprocess.run([path, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check("docker", WARN, f"{path}: `docker info` did not answer ({e.__class__.__name__})",
                     "start the Docker daemon (e.g. `sudo systemctl start docker`)")
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        return Check("docker", WARN, f"{path}: daemon not reachable ({err[0][:100] if err else 'no output'})",
                     "start the Docker daemon, or add your user to the docker group")
    return Check("docker", OK, f"{path}: server {proc.stdout.strip()}")


# All of it ---------------------------------------------------------------------------------------

def run_checks(load: Callable[[], Settings] = load_settings, prefect_url: str | None = None,
               timeout: float = 3.0, docker: bool = True) -> list[Check]:
    """Every check in order. Endpoint checks need a valid configuration and are skipped without one."""
    checks = [check_python(), check_packages()]
    config_check, settings = check_config(load)
    checks.append(config_check)
    if settings is not None:
        checks.append(check_data_dir(settings.data_dir))
        log_check = check_log_dir(settings.log_dir)
        if log_check is not None:
            checks.append(log_check)
        checks += check_websockets(settings, timeout)
        checks.append(check_rest(settings.rest_url, settings.venue_spec.depth_path, settings.symbols[0],
                                 timeout))
    checks.append(check_prefect(prefect_url, timeout))
    if docker:
        checks.append(check_docker())
    return checks
