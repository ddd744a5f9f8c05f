"""`midas doctor`: each check against real sockets, real HTTP servers and real directories."""

from __future__ import annotations

import http.server
import os
import json
import socket
import threading
from collections import namedtuple
from pathlib import Path

import pytest

from midas import doctor
from midas.exchange import LocalExchange
from midas.cli import main
from midas.config import load_settings

Usage = namedtuple("Usage", "total used free")


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str]] = {}

    def do_GET(self):  # noqa: N802 (http.server API)
        status, body = self.routes.get(self.path, (404, '{"code":-1,"msg":"not found"}'))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    """A real HTTP server on a free port; set `routes` {path: (status, body)} before requesting."""
    handler = type("Handler", (_Handler,), {"routes": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler.routes
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_python_check_statuses():
    assert doctor.check_python((3, 10), "/v", "/usr").status == "fail"
    warn = doctor.check_python((3, 11), "/usr", "/usr")
    assert warn.status == "warn" and warn.found == "Python 3.11 at /usr (not a virtual environment)"
    ok = doctor.check_python((3, 12), "/work/.venv", "/usr")
    assert ok == doctor.Check("python", "ok", "Python 3.12 at /work/.venv (virtual environment)")


def test_packages_check_names_the_missing_module():
    ok = doctor.check_packages(("json", "duckdb"))
    assert ok.status == "ok" and ok.found.startswith("all 2 libraries found")
    bad = doctor.check_packages(("json", "no_such_module_midas_x"))
    assert bad.status == "fail" and bad.found == "missing: no_such_module_midas_x"
    assert "make setup" in bad.remedy


def test_config_check_reports_the_bad_variable(monkeypatch):
    monkeypatch.setenv("SYMBOLS", "BTC/USDT")
    check, settings = doctor.check_config(lambda: load_settings(env_file=None))
    assert settings is None and check.status == "fail"
    assert "SYMBOLS" in check.found and "'BTC/USDT'" in check.found
    monkeypatch.setenv("SYMBOLS", "btcusdt,ethusdt")
    check, settings = doctor.check_config(lambda: load_settings(env_file=None))
    assert check.status == "ok" and settings.symbols == ["BTCUSDT", "ETHUSDT"]
    assert check.found == "venue binance-futures, symbols BTCUSDT,ETHUSDT, streams depth,trade"


def test_data_dir_free_space_thresholds(tmp_path):
    gb = 1 << 30
    ok = doctor.check_data_dir(tmp_path, disk_usage=lambda p: Usage(100 * gb, 0, 50 * gb))
    assert ok == doctor.Check("data directory", "ok", f"{tmp_path}, 50.0 GB free")
    warn = doctor.check_data_dir(tmp_path, disk_usage=lambda p: Usage(100 * gb, 0, 5 * gb))
    assert warn.status == "warn"
    fail = doctor.check_data_dir(tmp_path, disk_usage=lambda p: Usage(100 * gb, 0, gb // 2))
    assert fail.status == "fail" and fail.found == f"{tmp_path}, 512.0 MB free"
    missing = tmp_path / "new" / "data"
    later = doctor.check_data_dir(missing, disk_usage=lambda p: Usage(100 * gb, 0, 50 * gb))
    assert later.found == f"{missing} (will be created under {tmp_path.resolve()}), 50.0 GB free"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert doctor.check_data_dir(a_file).status == "fail"


def test_log_dir_check(tmp_path):
    assert doctor.check_log_dir(None) is None
    assert doctor.check_log_dir(tmp_path) == doctor.Check("log directory", "ok", str(tmp_path))
    later = doctor.check_log_dir(tmp_path / "logs" / "x")
    assert later == doctor.Check("log directory", "ok", f"{tmp_path / 'logs' / 'x'} (will be created under "
                                                        f"{tmp_path.resolve()})")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert doctor.check_log_dir(a_file).status == "fail"


def test_data_dir_not_writable(tmp_path):
    # the access check is injected: the tests may run as root, for whom every directory is writable
    seen = []

    def no_write(path, mode):
        seen.append((path, mode))
        return False

    check = doctor.check_data_dir(tmp_path / "data", access=no_write)
    assert check.status == "fail" and check.found == f"{tmp_path.resolve()} is not writable"
    assert seen == [(tmp_path.resolve(), os.W_OK | os.X_OK)]
    assert "DATA_DIR" in check.remedy


@pytest.fixture(scope="module")
def exchange():
    """The real local exchange (spot, ETHUSDT), in a thread of this process."""
    with LocalExchange(venue="binance", symbols=["ETHUSDT"]) as ex:
        yield ex


def test_websocket_check_against_the_local_exchange(exchange):
    stream = f"{exchange.ws_url}/stream?streams=ethusdt@trade"
    assert doctor.check_websocket(exchange.ws_url, stream) == doctor.Check(
        "websocket endpoint", "ok", f"{exchange.ws_url}: WebSocket handshake completed")
    wrong_path = doctor.check_websocket(exchange.ws_url, f"{exchange.ws_url}/api/v3/depth")
    assert wrong_path.status == "fail"
    assert wrong_path.found == f"{exchange.ws_url}/api/v3/depth: HTTP 404 instead of a WebSocket handshake"


def test_futures_websocket_checks_cover_both_routes(exchange):
    from midas.config import load_settings

    settings = load_settings(env_file=None, venue="binance-futures", ws_url=exchange.ws_url,
                             symbols=["ETHUSDT"], streams=["depth", "trade", "bookTicker"])
    assert doctor.check_websockets(settings) == [
        doctor.Check("websocket endpoint (depth, bookTicker)", "ok",
                     f"{exchange.ws_url}/public: WebSocket handshake completed"),
        doctor.Check("websocket endpoint (trade)", "ok",
                     f"{exchange.ws_url}/market: WebSocket handshake completed")]
    spot = load_settings(env_file=None, venue="binance", ws_url=exchange.ws_url, symbols=["ETHUSDT"])
    assert doctor.check_websockets(spot) == [
        doctor.Check("websocket endpoint", "ok", f"{exchange.ws_url}: WebSocket handshake completed")]


def test_websocket_check_against_a_non_websocket_server_and_a_closed_port():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def accept_and_close():
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.close()

    thread = threading.Thread(target=accept_and_close, daemon=True)
    thread.start()
    try:
        bad = doctor.check_websocket(f"ws://127.0.0.1:{port}")
    finally:
        thread.join(10)
        listener.close()
    assert bad.status == "fail" and bad.found.startswith(f"ws://127.0.0.1:{port}: not a WebSocket server (")
    closed = _closed_port()
    down = doctor.check_websocket(f"ws://127.0.0.1:{closed}")
    assert down.status == "fail"
    assert down.found == f"ws://127.0.0.1:{closed}: no answer (Connection refused)"
    assert "midas exchange" in down.remedy


def test_rest_check_against_the_local_exchange(exchange):
    ok = doctor.check_rest(exchange.rest_url, "/api/v3/depth", "ETHUSDT")
    assert ok == doctor.Check("rest endpoint", "ok",
                              f"{exchange.rest_url}: depth snapshot of ETHUSDT answered (HTTP 200)")
    unknown = doctor.check_rest(exchange.rest_url, "/api/v3/depth", "XRPUSDT")
    assert unknown.status == "warn" and unknown.found.startswith(f"{exchange.rest_url}: HTTP 400 for XRPUSDT")


def test_rest_check_reads_a_depth_snapshot(http_server):
    server, routes = http_server
    port = server.server_address[1]
    routes["/fapi/v1/depth?symbol=BTCUSDT&limit=5"] = (
        200, json.dumps({"lastUpdateId": 7, "bids": [["1.0", "2"]], "asks": [["1.1", "3"]]}))
    ok = doctor.check_rest(f"http://127.0.0.1:{port}", "/fapi/v1/depth", "BTCUSDT")
    assert ok == doctor.Check("rest endpoint", "ok",
                              f"http://127.0.0.1:{port}: depth snapshot of BTCUSDT answered (HTTP 200)")
    unknown = doctor.check_rest(f"http://127.0.0.1:{port}", "/fapi/v1/depth", "NOPEUSDT")
    assert unknown.status == "warn" and "HTTP 404 for NOPEUSDT" in unknown.found
    routes["/api/v3/depth?symbol=BTCUSDT&limit=5"] = (429, '{"code":-1003}')
    banned = doctor.check_rest(f"http://127.0.0.1:{port}", "/api/v3/depth", "BTCUSDT")
    assert banned.status == "fail" and banned.found.endswith("HTTP 429 (request budget exceeded)")
    closed = _closed_port()
    down = doctor.check_rest(f"http://127.0.0.1:{closed}", "/fapi/v1/depth", "BTCUSDT")
    assert down.status == "fail" and down.found == f"http://127.0.0.1:{closed}: no answer (Connection refused)"


def test_prefect_check(http_server):
    server, routes = http_server
    url = f"http://127.0.0.1:{server.server_address[1]}/api"
    assert doctor.check_prefect(None).status == "warn"
    routes["/api/health"] = (200, "true")
    assert doctor.check_prefect(url) == doctor.Check("prefect api", "ok", f"{url}: healthy")
    wrong = doctor.check_prefect(url.removesuffix("/api"))
    assert wrong.status == "fail" and "HTTP 404" in wrong.found and "end in /api" in wrong.remedy
    closed = _closed_port()
    assert doctor.check_prefect(f"http://127.0.0.1:{closed}/api").status == "fail"


def test_docker_check_without_docker():
    check = doctor.check_docker(which=lambda name: None)
    assert check == doctor.Check("docker", "warn", "docker not found", check.remedy)
    assert "docker compose" in check.remedy


def test_docker_check_with_a_failing_docker_binary(tmp_path):
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(0o755)
    check = doctor.check_docker(which=lambda name: str(fake))
    assert check.status == "warn"
    assert check.found == f"{fake}: daemon not reachable (Cannot connect to the Docker daemon)"


def test_doctor_command_all_endpoints_up(exchange, http_server, tmp_path, monkeypatch, capsys):
    server, routes = http_server
    routes["/api/health"] = (200, "true")
    monkeypatch.setenv("VENUE", "binance")
    monkeypatch.setenv("WS_URL", exchange.ws_url)
    monkeypatch.setenv("REST_URL", exchange.rest_url)
    monkeypatch.setenv("SYMBOLS", "ethusdt")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{server.server_address[1]}/api")
    code = main(["doctor", "--no-docker"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "MIDAS can run on this machine." in out
    assert out.count(" ok ") == 7   # python, packages, configuration, data dir, ws, rest, prefect


def test_doctor_command_fails_on_dead_endpoints(tmp_path, monkeypatch, capsys):
    closed = _closed_port()
    monkeypatch.setenv("WS_URL", f"ws://127.0.0.1:{closed}")
    monkeypatch.setenv("REST_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    code = main(["doctor", "--no-docker", "--timeout", "2"])
    captured = capsys.readouterr()
    assert code == 1
    # futures (the default venue): the /public and the /market base are checked apiece
    assert ("3 check(s) failed: websocket endpoint (depth), websocket endpoint (trade), rest endpoint"
            in captured.err)
    assert f"ws://127.0.0.1:{closed}/public: no answer" in captured.out
    assert f"ws://127.0.0.1:{closed}/market: no answer" in captured.out
