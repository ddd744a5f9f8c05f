"""A temporary Prefect API server for the demo, in its own session so that Ctrl-C reaches only the demo.

Prefect starts the same kind of server by itself when PREFECT_API_URL is unset, but as a child in
the demo's process group: Ctrl-C in the terminal would then kill the server at once, and the flow
runs, stopping, could no longer report their final state (the Prefect client retries for minutes).
Here the server runs in a new session, the demo stops its flows first and then the server. A small
watchdog process (this module's `__main__`) runs the server and stops it when the demo's process is
gone, so a demo killed without cleanup (SIGKILL) leaves no server behind.
"""

from __future__ import annotations

import atexit
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from midas.errors import MidasError


class PrefectServerError(MidasError):
    """The temporary Prefect server did not start."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/api/health")
        resp = conn.getresponse()
        return resp.status == 200 and resp.read().strip() == b"true"
    except OSError:
        return False
    finally:
        conn.close()


class TemporaryPrefectServer:
    """`with TemporaryPrefectServer() as server:` -> `server.api_url` ("http://127.0.0.1:PORT/api")."""

    def __init__(self, start_timeout: float = 120.0):
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._output = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> "TemporaryPrefectServer":
        import prefect
        from prefect.settings import get_current_settings

        self.port = _free_port()
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1",
               **get_current_settings().to_environment_variables(exclude_unset=True)}
        env.pop("PREFECT_API_URL", None)
        uvicorn = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent),
                   "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                   "--port", str(self.port), "--log-level", "error", "--lifespan", "on"]
        # Through the watchdog below: the server also stops when this process dies without cleanup.
        cmd = [sys.executable, "-m", "midas.demo.prefect_server", str(os.getpid()), *uvicorn]
        # Its output goes to a temporary file, not a pipe nobody reads (a full pipe would block it).
        self._output = tempfile.TemporaryFile()
        self.process = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=self._output,
                                        stderr=subprocess.STDOUT)
        atexit.register(self.stop)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._output.seek(0)
                err = self._output.read().decode("utf-8", "replace")[-800:]
                raise PrefectServerError(f"the temporary Prefect server exited with code "
                                         f"{self.process.returncode}: {err.strip() or 'no output'}")
            if _healthy(self.port):
                return self
            time.sleep(0.2)
        self.stop()
        raise PrefectServerError(f"the temporary Prefect server did not answer within {self.start_timeout:.0f} s; "
                                 "start one with `prefect server start` and set PREFECT_API_URL")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            if self._output is not None:
                self._output.close()
                self._output = None

    def __enter__(self) -> "TemporaryPrefectServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _serve_while_parent_lives(parent: int, cmd: list[str]) -> int:
    """Run `cmd` until it exits, this process gets SIGTERM, or `parent` is gone; return its code."""
    child = subprocess.Popen(cmd)

    def stop(signum, frame) -> None:
        child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while child.poll() is None:
        if os.getppid() != parent:
            child.terminate()
        try:
            child.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            continue
    return child.returncode


if __name__ == "__main__":
    sys.exit(_serve_while_parent_lives(int(sys.argv[1]), sys.argv[2:]))
