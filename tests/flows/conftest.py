"""One Prefect test server for the whole session of flow tests (it takes seconds to start)."""

from __future__ import annotations

import logging
import os
import time

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# midas.* lines logged outside a flow run (the local exchange's threads, an import before a flow)
# stay local, silently; threads without Prefect's settings context read this from the environment.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    from prefect.settings import PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW, temporary_settings

    with prefect_test_harness(server_startup_timeout=180), \
            temporary_settings({PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}):
        # What PREFECT_LOGGING_EXTRA_LOGGERS=midas does when Prefect sets up logging (deployments
        # and compose set the variable; here Prefect's logging may be set up before this runs).
        midas_logger = logging.getLogger("midas")
        added = [h for h in logging.getLogger("prefect.extra").handlers if h not in midas_logger.handlers]
        for handler in added:
            midas_logger.addHandler(handler)
        yield
        for handler in added:
            midas_logger.removeHandler(handler)


@pytest.fixture(scope="session")
def task_runs_of(prefect_harness):
    return _flow_task_runs


@pytest.fixture(scope="session")
def logs_of(prefect_harness):
    return _flow_run_logs


def _poll(read, ready, what: str, timeout: float = 90.0):
    """`read()` until `ready(value)`: Prefect 3 records task-run states and logs asynchronously
    (events and a batching log worker), so a flow run's API view can lag its end by a moment."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if ready(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {value}")
        time.sleep(0.25)


def _flow_task_runs(flow_run_id, expected: dict[str, tuple[str, int]]):
    """The task runs of a flow run as {name: [task runs]}, read back from the Prefect API once it
    shows exactly the `expected` names, one run each, with the expected (state type, run count);
    fails with what it last saw after 90 s."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    def read():
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        out: dict[str, list] = {}
        for run in runs:
            out.setdefault(run.name, []).append(run)
        return out

    def seen(runs) -> dict[str, list[tuple[str | None, int]]]:
        return {name: [(r.state.type.value if r.state else None, r.run_count) for r in rs]
                for name, rs in runs.items()}

    want = {name: [state] for name, state in expected.items()}
    return _poll(read, lambda runs: seen(runs) == want, f"task runs {want} of flow run {flow_run_id}")


def _flow_run_logs(flow_run_id, until) -> list[str]:
    """Every log line of a flow run (and its task runs) as `logger message`, once `until(lines)`."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    def read() -> list[str]:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        return [f"{log.name} {log.message}" for log in logs]

    return _poll(read, until, f"log lines of flow run {flow_run_id}")
