"""`midas inspect`: what is in DATA_DIR, as tables.

`take_inventory(data_dir)` walks the directory once and returns plain dataclasses: raw files per
venue, symbol and local hour; processed partitions per venue, symbol and exchange hour with their
rows and bytes (read from the Parquet footers, not the data); every gap; and the catalog's state
(tables, registered partitions, which files on disk it does not know). `render_inventory` prints
them with rich. The demo's summary is computed from the same inventory.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from midas.doctor import format_bytes
from midas.layout import DATASETS, dataset_dir, format_hour, list_raw_files, list_symbols, parse_raw_file_name
from midas.venues import VENUE_NAMES

_PARTITION_RE = re.compile(r"^venue=([a-z-]+)/symbol=([A-Z0-9]{2,20})/date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})$")


@dataclass
class RawHour:
    """The raw files one symbol wrote in one local-clock hour."""

    venue: str
    symbol: str
    hour: datetime
    files: int = 0
    partial_files: int = 0
    bytes: int = 0
    parts: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class PartitionInfo:
    dataset: str
    venue: str
    symbol: str
    hour: datetime
    path: Path
    rows: int
    bytes: int


@dataclass(frozen=True)
class GapInfo:
    venue: str
    symbol: str
    hour: datetime
    start_ts: int | None
    end_ts: int | None
    reason: str
    first_update_id: int | None
    last_update_id: int | None

    @property
    def seconds(self) -> float | None:
        if self.start_ts is None or self.end_ts is None:
            return None
        return (self.end_ts - self.start_ts) / 1e6


@dataclass
class CatalogState:
    path: Path
    exists: bool
    bytes: int = 0
    objects: dict[str, str] = field(default_factory=dict)        # name -> "table" / "view"
    table_rows: dict[str, int] = field(default_factory=dict)
    registered: set[tuple[str, str, str, str, int]] = field(default_factory=set)  # dataset, venue, symbol, date, hour
    unregistered: list[PartitionInfo] = field(default_factory=list)
    error: str | None = None


@dataclass
class Inventory:
    data_dir: Path
    raw: list[RawHour]
    partitions: list[PartitionInfo]
    gaps: list[GapInfo]
    catalog: CatalogState
    problems: list[str] = field(default_factory=list)

    def raw_bytes(self) -> int:
        return sum(r.bytes for r in self.raw)

    def rows_by_dataset(self) -> dict[str, int]:
        out = {d: 0 for d in DATASETS}
        for p in self.partitions:
            out[p.dataset] += p.rows
        return out

    def bytes_by_dataset(self) -> dict[str, int]:
        out = {d: 0 for d in DATASETS}
        for p in self.partitions:
            out[p.dataset] += p.bytes
        return out

    def gap_reasons(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for g in self.gaps:
            out[g.reason] += 1
        return dict(sorted(out.items()))


# Walking the directory ---------------------------------------------------------------------------

def raw_inventory(data_dir: Path) -> list[RawHour]:
    """Raw files (final and .partial) grouped per venue, symbol and local hour, in that order."""
    hours: dict[tuple[str, str, datetime], RawHour] = {}
    for venue in VENUE_NAMES:
        for symbol in list_symbols(data_dir, venue):
            for partial in (False, True):
                for path in list_raw_files(data_dir, venue, symbol, partial=partial):
                    info = parse_raw_file_name(path.name)
                    key = (venue, symbol, info.hour)
                    entry = hours.setdefault(key, RawHour(venue, symbol, info.hour))
                    entry.bytes += path.stat().st_size
                    if partial:
                        entry.partial_files += 1
                    else:
                        entry.files += 1
                        entry.parts.append(info.part)
    return [hours[k] for k in sorted(hours)]


def list_partitions(data_dir: Path, dataset: str, problems: list[str] | None = None) -> list[PartitionInfo]:
    """Every `part-0.parquet` of one dataset with its row count (from the footer) and size."""
    root = dataset_dir(data_dir, dataset)
    if not root.is_dir():
        return []
    out: list[PartitionInfo] = []
    for path in sorted(root.glob("venue=*/symbol=*/date=*/hour=*/part-0.parquet")):
        rel = path.parent.relative_to(root).as_posix()
        m = _PARTITION_RE.match(rel)
        if not m or m.group(1) not in VENUE_NAMES:
            if problems is not None:
                problems.append(f"{path}: not a MIDAS partition path (ignored)")
            continue
        venue, symbol, day, hh = m.groups()
        hour = datetime.strptime(f"{day}T{hh}", "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except Exception as e:  # a torn or foreign file: report it, keep inspecting the rest
            if problems is not None:
                problems.append(f"{path}: unreadable Parquet footer ({e})")
            continue
        out.append(PartitionInfo(dataset, venue, symbol, hour, path, rows, path.stat().st_size))
    return out


def read_gaps(partitions: list[PartitionInfo], problems: list[str] | None = None) -> list[GapInfo]:
    """Every row of the given `gaps` partitions, in time order per venue and symbol."""
    out: list[GapInfo] = []
    for p in partitions:
        if p.dataset != "gaps" or p.rows == 0:
            continue
        try:
            table = pq.read_table(p.path)
        except Exception as e:
            if problems is not None:
                problems.append(f"{p.path}: unreadable gaps partition ({e})")
            continue
        cols = {name: table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
                for name in ("start_ts", "end_ts", "reason", "first_update_id", "last_update_id")}
        for i in range(table.num_rows):
            out.append(GapInfo(p.venue, p.symbol, p.hour, cols["start_ts"][i], cols["end_ts"][i],
                               str(cols["reason"][i]), cols["first_update_id"][i], cols["last_update_id"][i]))
    out.sort(key=lambda g: (g.venue, g.symbol, g.start_ts if g.start_ts is not None else 0))
    return out


def catalog_state(path: Path, partitions: list[PartitionInfo]) -> CatalogState:
    """What the DuckDB catalog holds, opened read-only (a running writer makes it `locked`)."""
    state = CatalogState(path=path, exists=path.is_file())
    if not state.exists:
        state.unregistered = list(partitions)
        return state
    state.bytes = path.stat().st_size
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as e:
        state.error = f"cannot open read-only ({str(e).splitlines()[0][:160]})"
        return state
    try:
        objects = con.execute(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_schema = 'main' ORDER BY table_name").fetchall()
        for name, kind in objects:
            state.objects[name] = "view" if kind == "VIEW" else "table"
        for name, kind in state.objects.items():
            if kind == "table":
                state.table_rows[name] = con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0]
        if state.objects.get("partitions") == "table":
            cols = {r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'partitions'").fetchall()}
            if {"dataset", "venue", "symbol", "date", "hour"} <= cols:
                rows = con.execute("SELECT dataset, venue, symbol, CAST(date AS VARCHAR), CAST(hour AS INTEGER) "
                                   "FROM partitions").fetchall()
                state.registered = {(d, v, s, day[:10], int(h)) for d, v, s, day, h in rows}
    except duckdb.Error as e:
        state.error = f"cannot read ({str(e).splitlines()[0][:160]})"
    finally:
        con.close()
    state.unregistered = [p for p in partitions if _partition_key(p) not in state.registered]
    return state


def _partition_key(p: PartitionInfo) -> tuple[str, str, str, str, int]:
    return (p.dataset, p.venue, p.symbol, f"{p.hour:%Y-%m-%d}", p.hour.hour)


def latest_hour(data_dir: Path, dataset: str, venue: str, symbol: str) -> datetime | None:
    """The most recent exchange hour of a symbol with a partition of `dataset`, or None."""
    hours = [p.hour for p in list_partitions(data_dir, dataset) if p.venue == venue and p.symbol == symbol]
    return max(hours) if hours else None


def take_inventory(data_dir: Path) -> Inventory:
    data_dir = Path(data_dir)
    problems: list[str] = []
    partitions = [p for d in DATASETS for p in list_partitions(data_dir, d, problems)]
    gaps = read_gaps([p for p in partitions if p.dataset == "gaps"], problems)
    catalog = catalog_state(data_dir / "midas.duckdb", partitions)
    return Inventory(data_dir, raw_inventory(data_dir), partitions, gaps, catalog, problems)


# Rendering ---------------------------------------------------------------------------------------

def _ts_text(ts_us: int | None) -> str:
    if ts_us is None:
        return "open"
    return datetime.fromtimestamp(ts_us / 1e6, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def raw_table(inv: Inventory) -> Table:
    table = Table(title=f"raw files ({format_bytes(inv.raw_bytes())})")
    for col in ("venue", "symbol", "local hour", "files", "parts", "being written", "size"):
        table.add_column(col, justify="right" if col in ("files", "being written", "size") else "left")
    for r in inv.raw:
        table.add_row(r.venue, r.symbol, format_hour(r.hour), str(r.files),
                      ",".join(str(p) for p in sorted(r.parts)) or "-", str(r.partial_files),
                      format_bytes(r.bytes))
    return table


def partitions_table(inv: Inventory) -> Table:
    table = Table(title="processed partitions (rows; exchange-time hours)")
    for col in ("venue", "symbol", "hour", *DATASETS, "features size", "in catalog"):
        table.add_column(col, justify="left" if col in ("venue", "symbol", "hour") else "right")
    grouped: dict[tuple[str, str, datetime], dict[str, PartitionInfo]] = defaultdict(dict)
    for p in inv.partitions:
        grouped[(p.venue, p.symbol, p.hour)][p.dataset] = p
    unregistered = {id(p) for p in inv.catalog.unregistered}
    for (venue, symbol, hour), parts in sorted(grouped.items()):
        cells = [str(parts[d].rows) if d in parts else "-" for d in DATASETS]
        feat = parts.get("features")
        missing = [d for d, p in parts.items() if id(p) in unregistered]
        registered = "no catalog" if not inv.catalog.exists else ("yes" if not missing else
                                                                  "missing " + ",".join(sorted(missing)))
        table.add_row(venue, symbol, format_hour(hour), *cells, format_bytes(feat.bytes) if feat else "-",
                      registered)
    return table


def gaps_table(inv: Inventory, max_rows: int | None = None) -> Table:
    """Every gap, or the last `max_rows` of each venue and symbol (the title says how many are left out)."""
    shown = inv.gaps
    if max_rows is not None:
        per_symbol: dict[tuple[str, str], list[GapInfo]] = defaultdict(list)
        for g in inv.gaps:
            per_symbol[(g.venue, g.symbol)].append(g)
        shown = [g for key in sorted(per_symbol) for g in per_symbol[key][-max_rows:]]
    left_out = len(inv.gaps) - len(shown)
    title = f"gaps ({len(inv.gaps)}: " + (", ".join(f"{n} {r}" for r, n in inv.gap_reasons().items()) or "none") + ")"
    if left_out:
        title += f"; the last {max_rows} per symbol shown, {left_out} earlier ones left out"
    table = Table(title=title)
    for col in ("venue", "symbol", "from (UTC)", "to (UTC)", "seconds", "reason", "update ids"):
        table.add_column(col)
    for g in shown:
        ids = f"{g.first_update_id}..{g.last_update_id}" if g.first_update_id is not None else "-"
        table.add_row(g.venue, g.symbol, _ts_text(g.start_ts), _ts_text(g.end_ts),
                      "-" if g.seconds is None else f"{g.seconds:.3f}", g.reason, ids)
    return table


def catalog_table(inv: Inventory) -> Table:
    c = inv.catalog
    table = Table(title=f"catalog {c.path}")
    table.add_column("item")
    table.add_column("state")
    if not c.exists:
        table.add_row("catalog", "not created yet (the hourly processing or `midas catalog rebuild` makes it)")
        return table
    table.add_row("size", format_bytes(c.bytes))
    if c.error:
        table.add_row("state", c.error)
        return table
    for name, kind in c.objects.items():
        table.add_row(f"{kind} {name}", f"{c.table_rows[name]} rows" if name in c.table_rows else "view")
    on_disk = len(inv.partitions)
    table.add_row("partitions on disk", str(on_disk))
    table.add_row("not registered", str(len(c.unregistered)) + (
        " (run `midas catalog rebuild`)" if c.unregistered else ""))
    return table


def render_inventory(inv: Inventory, console: Console, max_gaps: int | None = None) -> None:
    console.print(f"[bold]DATA_DIR[/] {inv.data_dir.resolve()}")
    if not inv.raw and not inv.partitions and not inv.catalog.exists:
        console.print("empty: nothing collected or processed yet (try `make demo`)")
        return
    console.print(raw_table(inv))
    console.print(partitions_table(inv))
    console.print(gaps_table(inv, max_gaps))
    console.print(catalog_table(inv))
    for problem in inv.problems:
        console.print(f"[yellow]problem:[/] {problem}")
