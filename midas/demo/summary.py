"""The demo's closing summary: what was collected, what it became, how fast each stage ran.

`DemoReport` is plain data, filled from the inventory of DATA_DIR (midas.inspection), a count of
the raw records by type, the trades the rebuild found missing (from the ledger of processed hours,
midas.scheduling), and the timings of the stages; `render_report` prints it as rich tables
and `report_markdown` as Markdown (the same figures, e.g. for a Prefect artifact).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from midas.doctor import format_bytes
from midas.inspection import GapInfo, Inventory
from midas.layout import DATASETS, format_hour, list_raw_files
from midas.raw import RawFileReader


@dataclass(frozen=True)
class StageTiming:
    """One stage's work: `items` of `unit` in `seconds` of wall time."""

    stage: str
    items: int
    unit: str
    seconds: float

    @property
    def per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class QueryResult:
    title: str
    sql: str
    columns: list[str]
    rows: list[tuple]
    command: str = ""        # the `midas query ...` line that gives the same result


@dataclass
class DemoReport:
    venue: str
    symbols: list[str]
    data_dir: Path
    collect_seconds: float
    messages: dict[str, int]                     # raw records per type
    raw_files: int
    raw_bytes: int
    rows: dict[str, int]                         # rows per dataset
    dataset_bytes: dict[str, int]
    gaps: list[GapInfo]
    hours: list[tuple[str, datetime, int]]       # (symbol, hour, features rows) processed
    stages: list[StageTiming]
    # trade ids missing per symbol (holes in Binance's gapless numbering, summed over the processed
    # hours as the rebuild counted them); a symbol without a processed hour is absent
    trades_missing: dict[str, int] = field(default_factory=dict)
    queries: list[QueryResult] = field(default_factory=list)
    charts: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def total_messages(self) -> int:
        return sum(self.messages.values())

    @property
    def features_fraction(self) -> float:
        """Features bytes as a fraction of raw bytes (NaN without raw data)."""
        return self.dataset_bytes.get("features", 0) / self.raw_bytes if self.raw_bytes else float("nan")

    def gap_reasons(self, symbol: str | None = None) -> dict[str, int]:
        """Gap intervals per reason, of one symbol or of all."""
        return dict(sorted(Counter(g.reason for g in self.gaps if symbol in (None, g.symbol)).items()))

    def symbol_rows(self) -> list[tuple[str, str, str]]:
        """Per symbol: (symbol, gaps with their reasons, trades missing or "-" when not counted)."""
        out = []
        for symbol in self.symbols:
            reasons = self.gap_reasons(symbol)
            gaps = f"{sum(reasons.values())}" + (
                f" ({', '.join(f'{n} {r}' for r, n in reasons.items())})" if reasons else "")
            missing = self.trades_missing.get(symbol)
            out.append((symbol, gaps, "-" if missing is None else f"{missing:,}"))
        return out


def trades_missing_by_symbol(ledger: dict[str, dict], venue: str, symbols: list[str]) -> dict[str, int]:
    """Trade ids missing per symbol, summed over the hours of the ledger of processed hours
    (`venue/SYMBOL/YYYY-MM-DDTHH` -> {..., "trades_missing": N}); symbols without a processed hour
    that has the count are left out."""
    out: dict[str, int] = {}
    for key, entry in ledger.items():
        key_venue, symbol, _ = key.split("/", 2)
        if key_venue == venue and symbol in symbols and "trades_missing" in entry:
            out[symbol] = out.get(symbol, 0) + int(entry["trades_missing"])
    return out


def raw_file_counts(path: Path) -> dict[str, int]:
    """Records per `type` of one raw file."""
    counts: Counter[str] = Counter()
    for _, line in RawFileReader(path).iter_lines():
        try:
            kind = orjson.loads(line).get("type")
        except (orjson.JSONDecodeError, AttributeError):
            kind = "unreadable"
        counts[str(kind)] += 1
    return dict(counts)


def raw_message_counts(data_dir: Path, venue: str, symbols: list[str]) -> tuple[dict[str, int], int, int]:
    """(records per `type`, final files, bytes) of the final raw files of these symbols."""
    counts: Counter[str] = Counter()
    files = size = 0
    for symbol in symbols:
        for path in list_raw_files(data_dir, venue, symbol):
            files += 1
            size += path.stat().st_size
            counts.update(raw_file_counts(path))
    return dict(sorted(counts.items())), files, size


def build_report(inv: Inventory, *, venue: str, symbols: list[str], collect_seconds: float,
                 hours: list[tuple[str, datetime, int]], stages: list[StageTiming],
                 ledger: dict[str, dict] | None = None) -> DemoReport:
    """The report of one venue's demo run, from the inventory of its data directory and the
    ledger of processed hours (`midas.scheduling.processed_hours`: the trades missing)."""
    messages, files, size = raw_message_counts(inv.data_dir, venue, symbols)
    mine = [p for p in inv.partitions if p.venue == venue and p.symbol in symbols]
    rows = {d: sum(p.rows for p in mine if p.dataset == d) for d in DATASETS}
    sizes = {d: sum(p.bytes for p in mine if p.dataset == d) for d in DATASETS}
    gaps = [g for g in inv.gaps if g.venue == venue and g.symbol in symbols]
    return DemoReport(venue=venue, symbols=list(symbols), data_dir=inv.data_dir,
                      collect_seconds=collect_seconds, messages=messages, raw_files=files, raw_bytes=size,
                      rows=rows, dataset_bytes=sizes, gaps=gaps, hours=list(hours), stages=list(stages),
                      trades_missing=trades_missing_by_symbol(ledger or {}, venue, list(symbols)),
                      problems=list(inv.problems))


def _rate(t: StageTiming) -> str:
    return "-" if t.seconds <= 0 else f"{t.per_second:,.0f} {t.unit}/s"


def render_report(report: DemoReport, console: Console) -> None:
    head = Table(title=f"MIDAS demo summary: {report.venue} {', '.join(report.symbols)}", show_header=False)
    head.add_column("what")
    head.add_column("value", justify="right")
    msg = ", ".join(f"{n:,} {k}" for k, n in report.messages.items())
    head.add_row("messages recorded", f"{report.total_messages:,} ({msg})")
    head.add_row("collection time", f"{report.collect_seconds:.1f} s")
    head.add_row("raw files", f"{report.raw_files} files, {format_bytes(report.raw_bytes)}")
    for d in DATASETS:
        head.add_row(f"{d} rows", f"{report.rows.get(d, 0):,} ({format_bytes(report.dataset_bytes.get(d, 0))})")
    frac = report.features_fraction
    head.add_row("features size / raw size", "-" if frac != frac else f"{frac:.1%}")
    reasons = ", ".join(f"{n} {r}" for r, n in report.gap_reasons().items()) or "none"
    head.add_row("gaps", f"{len(report.gaps)} ({reasons})")
    console.print(head)

    per_symbol = Table(title="gaps and trades missing per symbol")
    for col in ("symbol", "gaps", "trades missing"):
        per_symbol.add_column(col, justify="right" if col == "trades missing" else "left")
    for row in report.symbol_rows():
        per_symbol.add_row(*row)
    console.print(per_symbol)

    if report.gaps:
        gaps = Table(title="gaps (intervals without a valid book)")
        for col in ("symbol", "from (UTC)", "seconds", "reason"):
            gaps.add_column(col)
        for g in report.gaps:
            start = "-" if g.start_ts is None else datetime.fromtimestamp(g.start_ts / 1e6, tz=timezone.utc).strftime(
                "%H:%M:%S.%f")[:-3]
            gaps.add_row(g.symbol, start, "open" if g.seconds is None else f"{g.seconds:.3f}", g.reason)
        console.print(gaps)

    stages = Table(title="throughput per stage")
    for col in ("stage", "work", "seconds", "throughput"):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    for t in report.stages:
        stages.add_row(t.stage, f"{t.items:,} {t.unit}", f"{t.seconds:.2f}", _rate(t))
    console.print(stages)

    if report.hours:
        hours = Table(title="hours processed (exchange time)")
        for col in ("symbol", "hour", "features rows"):
            hours.add_column(col)
        for symbol, hour, n in report.hours:
            hours.add_row(symbol, format_hour(hour), f"{n:,}")
        console.print(hours)

    for q in report.queries:
        render_query(q, console)
    for path in report.charts:
        console.print(f"chart: {path}")
    for p in report.problems:
        console.print(f"[yellow]problem:[/] {p}")


def render_query(q: QueryResult, console: Console) -> None:
    console.print(f"[bold]# {q.title}[/]")
    console.print(q.command or f"midas query {q.sql.strip()!r}", markup=False, soft_wrap=True)
    console.print(q.sql.strip(), style="dim", markup=False)
    table = Table()
    for c in q.columns:
        table.add_column(c)
    for row in q.rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    console.print(table)


def report_markdown(report: DemoReport) -> str:
    """The summary's figures as Markdown."""
    frac = report.features_fraction
    lines = [f"# MIDAS demo: {report.venue} {', '.join(report.symbols)}", "",
             "| what | value |", "|---|---|",
             f"| messages recorded | {report.total_messages:,} |",
             f"| raw files | {report.raw_files} ({format_bytes(report.raw_bytes)}) |"]
    lines += [f"| {d} rows | {report.rows.get(d, 0):,} |" for d in DATASETS]
    lines.append(f"| features size / raw size | {'-' if frac != frac else f'{frac:.1%}'} |")
    reasons = ", ".join(f"{n} {r}" for r, n in report.gap_reasons().items()) or "none"
    lines.append(f"| gaps | {len(report.gaps)} ({reasons}) |")
    lines += ["", "| symbol | gaps | trades missing |", "|---|---|---|"]
    lines += [f"| {symbol} | {gaps} | {missing} |" for symbol, gaps, missing in report.symbol_rows()]
    lines += ["", "| stage | work | seconds | throughput |", "|---|---|---|---|"]
    lines += [f"| {t.stage} | {t.items:,} {t.unit} | {t.seconds:.2f} | {_rate(t)} |" for t in report.stages]
    return "\n".join(lines) + "\n"


def midas_command() -> str:
    """How to type this program in the commands MIDAS suggests: `midas` when that is what the
    shell finds, else the path of the virtual environment's script (e.g. `.venv/bin/midas` after
    `make demo`, which does not activate the environment)."""
    import os
    import shutil
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "midas"
    found = shutil.which("midas")
    if not script.exists() or (found and Path(found).resolve() == script.resolve()):
        return "midas"
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else str(script)
