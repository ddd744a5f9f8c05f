"""The demo's processing flow: the hourly flow's task for hours passed explicitly.

The hourly flow (flows/hourly.py) processes *closed* hours only, so a live recorder never reads an
hour that is still being written. The demo stops its collector first (every raw file is final) and
then must also process the current, still-open hour; this flow takes the hours as a parameter and
runs the very task of the hourly flow (`flows.hour_tasks.process_hour_task`: rebuild -> features ->
catalog, recorded in the ledger) for each, one after the other, in hour order per symbol: two
catalog registrations at once in one process can conflict in DuckDB ("write-write conflict"), and
the demo's box has two cores to share with the exchange anyway. It returns
every hour's `HourSummary` and publishes a Markdown table of them as the `midas-demo-hours` artifact.
`publish_demo_summary` publishes the closing summary of a venue's run the same way.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from midas.config import load_settings
from midas.layout import format_hour, parse_hour

DEMO_HOUR_RETRIES = 1


@flow(name="midas-demo-hours", task_runner=ThreadPoolTaskRunner(max_workers=2))
def process_demo_hours(data_dir: str, venue: str, symbols: list[str], hours: list[tuple[str, str]]) -> list[Any]:
    """Process the given (symbol, YYYY-MM-DDTHH) hours, oldest first per symbol."""
    from flows.hour_tasks import process_hour_task

    settings = load_settings(data_dir=data_dir, venue=venue, symbols=symbols)
    task = process_hour_task.with_options(retries=DEMO_HOUR_RETRIES, retry_delay_seconds=2)
    futures: list[Any] = []
    for symbol, hour in sorted(hours, key=lambda sh: (sh[0], sh[1])):
        futures.append(task.submit(settings, venue, symbol, parse_hour(hour),
                                   wait_for=futures[-1:] or None))
    summaries = [f.result() for f in futures]
    lines = ["| symbol | hour (UTC) | book | trades | gaps | features | seconds |", "|---|---|---|---|---|---|---|"]
    for s in summaries:
        rows = dict(s.rows)
        lines.append(f"| {s.symbol} | {format_hour(s.hour)} | {rows.get('book', 0)} | {rows.get('trades', 0)} | "
                     f"{rows.get('gaps', 0)} | {rows.get('features', 0)} | {s.seconds:.2f} |")
    create_markdown_artifact("\n".join(lines), key="midas-demo-hours",
                             description=f"demo: {len(summaries)} symbol-hours processed on {venue}")
    return summaries


@flow(name="midas-demo-summary")
def publish_demo_summary(markdown: str, venue: str, description: str) -> None:
    """Publish one venue's demo summary as the Markdown artifact `midas-demo-summary-<venue>`."""
    create_markdown_artifact(markdown, key=f"midas-demo-summary-{venue}", description=description)
