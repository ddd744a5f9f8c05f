"""The real thing: `prefect server start` on a free local port (its own PREFECT_HOME), `midas ops
deploy` (what `make deploy` runs: the process work pool, then `prefect --no-prompt deploy --all` of
prefect.yaml), two workers, `prefect deployment run midas-hourly/midas-hourly`, and the hour
partitions appear in the catalog. Each worker takes one flow run at a time, so the symbol's run
(fan-out) can only go to the second worker: scaling out by adding workers to the pool. Everything started here is stopped by PID (the workers with SIGTERM,
then SIGINT: a worker ignores a single SIGTERM).

(The module name sorts before the other flow tests so that it runs before their session-wide
Prefect test server starts: two servers at once slow this 2-core box down.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from midas.catalog import run_query
from midas.config import load_settings
from midas.importer import import_recording
from midas.layout import parse_hour, partition_file

VENUE = "binance-futures"
HOURS = ["2024-07-18T23", "2024-07-19T00"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(condition, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(proc: subprocess.Popen, signals: list[tuple[int, float]]) -> None:
    """Send each signal in turn, waiting up to its seconds for the process to end; SIGKILL last."""
    for sig, seconds in signals:
        if proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=seconds)
            return
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _prefect(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("prefect")), *args]


def test_deployed_hourly_run_on_a_worker_fills_the_catalog(tmp_path, repo_root, recordings):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    home = tmp_path / "prefect-home"
    home.mkdir()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_WORKER_QUERY_SECONDS": "1", "MIDAS_HOME": str(repo_root),
           # No runs from midas-hourly's cron while the test runs (they would use the repo's data/);
           # the schedule itself is registered and checked below.
           "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"}
    env.pop("PREFECT_PROFILES_PATH", None)
    logs = tmp_path / "logs"
    logs.mkdir()
    started: list[tuple[subprocess.Popen, list[tuple[int, float]]]] = []

    def start(name: str, cmd: list[str], stop_signals: list[tuple[int, float]]) -> subprocess.Popen:
        out = open(logs / f"{name}.log", "wb")
        proc = subprocess.Popen(cmd, cwd=repo_root, env=env, stdout=out, stderr=subprocess.STDOUT)
        started.append((proc, stop_signals))
        return proc

    def run(cmd: list[str]) -> str:
        print(f"{time.strftime('%H:%M:%S')} {Path(cmd[0]).name} {cmd[1]} {cmd[2]}", flush=True)
        done = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    data_dir = tmp_path / "data"
    try:
        server = start("server", _prefect("server", "start", "--host", "127.0.0.1", "--port", str(port)),
                       [(signal.SIGTERM, 30), (signal.SIGINT, 30)])
        import_recording(recordings[VENUE], VENUE, data_dir)
        _wait_for(lambda: _healthy(api) or server.poll() is not None, "the Prefect server", 180)
        assert server.poll() is None, (logs / "server.log").read_text()[-3000:]

        # `make deploy`: creates the process work pool, then `prefect --no-prompt deploy --all`.
        deployed = run([str(Path(sys.executable).with_name("midas")), "ops", "deploy"])
        for name in ("worker-a", "worker-b"):
            # A worker ignores a single SIGTERM: SIGINT follows after a moment.
            start(name, _prefect("worker", "start", "--pool", "midas-process", "--limit", "1"),
                  [(signal.SIGTERM, 2), (signal.SIGINT, 30)])
        for name in ("midas-collect/midas-collect", "midas-hourly/midas-hourly",
                     "midas-backfill/midas-backfill", "midas-symbol-hours/midas-symbol-hours"):
            assert f"Deployment '{name}' successfully created" in " ".join(deployed.split())

        params = json.dumps({"data_dir": str(data_dir), "venue": VENUE, "symbols": ["BTCUSDT"]})
        run(_prefect("deployment", "run", "midas-hourly/midas-hourly", "--params", params,
                     "--watch", "--watch-timeout", "240"))

        runs = httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10).json()
        by_flow = {}
        for r in runs:
            by_flow.setdefault(r["name"] if r["parameters"].get("symbol") else "hourly", []).append(r)
        (hourly_run,) = by_flow.pop("hourly")
        assert hourly_run["parameters"]["data_dir"] == str(data_dir)
        assert hourly_run["state"]["type"] == "COMPLETED"
        # fan_out (set by prefect.yaml): one midas-symbol-hours run for BTCUSDT, a child of the hourly run.
        (symbol_run,) = by_flow.pop("BTCUSDT 2024-07-18T23..2024-07-19T00")
        assert by_flow == {}
        assert symbol_run["state"]["type"] == "COMPLETED"
        assert symbol_run["parameters"]["hours"] == HOURS
        assert symbol_run["parent_task_run_id"] is not None
        # Each worker ran exactly one of the two runs (a worker may also try a run the other one
        # got first: the server aborts that submission, and it is not "submitted to infrastructure").
        taken = {w: (logs / f"{w}.log").read_text().count("submitted to infrastructure")
                 for w in ("worker-a", "worker-b")}
        assert taken == {"worker-a": 1, "worker-b": 1}
        deployment = httpx.post(f"{api}/deployments/filter", json={
            "deployments": {"name": {"any_": ["midas-hourly"]}}}, timeout=10).json()[0]
        assert deployment["pull_steps"] == [{"prefect.deployments.steps.set_working_directory":
                                             {"directory": str(repo_root)}}]
        assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["5 * * * *"]
        # The job's environment from prefect.yaml sent the pipeline's midas.* lines to the UI.
        def processed_lines() -> list[str]:
            lines = httpx.post(f"{api}/logs/filter", json={
                "logs": {"flow_run_id": {"any_": [symbol_run["id"]]}}, "limit": 200}, timeout=10).json()
            return [line["message"] for line in lines if line["name"] == "midas.scheduling"
                    and line["message"].startswith("hour processed")]

        processed = _wait_for(lambda: (lines := processed_lines()) and len(lines) >= 2 and lines,
                              "the symbol run's midas.scheduling log lines", 60)
        assert [m.split(" hour=")[1].split()[0] for m in processed] == HOURS
    finally:
        print(f"{time.strftime('%H:%M:%S')} stopping {len(started)} processes", flush=True)
        for proc, stop_signals in reversed(started):
            _stop(proc, stop_signals)
        print(f"{time.strftime('%H:%M:%S')} stopped", flush=True)
    assert all(proc.poll() is not None for proc, _ in started)
    assert not _healthy(api)

    settings = load_settings(env_file=None, data_dir=data_dir, venue=VENUE, symbols=["BTCUSDT"])
    _, rows = run_query(settings, "SELECT dataset, strftime(date, '%Y-%m-%d') || 'T' || "
                                  "lpad(hour::VARCHAR, 2, '0'), rows FROM partitions ORDER BY 1, 2")
    expected = []
    for dataset in ("book", "features", "gaps", "trades"):
        for hour in HOURS:
            path = partition_file(data_dir, dataset, VENUE, "BTCUSDT", parse_hour(hour))
            if path.exists():
                expected.append((dataset, hour, pq.ParquetFile(path).metadata.num_rows))
    assert rows == expected
    assert {(d, h) for d, h, _ in rows} >= {(d, h) for d in ("book", "trades", "features") for h in HOURS}
