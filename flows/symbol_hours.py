"""One symbol's hours, as their own flow run: what `midas-hourly` (with fan_out) starts per symbol
through the `midas-symbol-hours` deployment, so that every worker of the pool can take one and
symbol-hours are processed in parallel on as many workers as the pool has."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from flows.common import flow_settings
from flows.hour_tasks import run_hours
from midas.layout import parse_hour
from midas.scheduling import HourKey


def _run_name() -> str:
    params = flow_run.parameters
    hours = params["hours"]
    return f"{params['symbol']} {hours[0]}..{hours[-1]}" if hours else f"{params['symbol']} no hours"


@flow(name="midas-symbol-hours", flow_run_name=_run_name)
def symbol_hours(symbol: str, hours: list[str], data_dir: str | None = None, venue: str | None = None,
                 retry_delay_seconds: float = 30.0) -> list[dict]:
    """Process these hours (YYYY-MM-DDTHH, UTC) of one symbol, in hour order."""
    settings = flow_settings("hourly", data_dir=data_dir, venue=venue, symbols=[symbol])
    keys = [HourKey(settings.venue, settings.symbols[0], parse_hour(h)) for h in hours]
    return run_hours(settings, keys, retry_delay_seconds=retry_delay_seconds,
                     artifact_key="midas-symbol-hours-summary", title=f"{symbol} hours")
