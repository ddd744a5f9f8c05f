"""The book rebuild: raw files -> the exact book on the grid, trades and gaps (SPEC §1-§3).

Public API:
    rebuild_hour(settings, venue, symbol, hour) -> RebuildResult
        rows: dict[str, int] ("book", "trades", "gaps"), gaps: list[dict], problems: list[str],
        paths: dict[str, Path], seconds: float, complete: bool, started_from, counts
    raw_hours(settings, venue, symbol) -> list[datetime]   exchange-time hours in the raw files

Modules: decimals (exact units), orderbook (the book, on kernels: compiled per-level work),
lineparse (compiled reading of plain depth and trade lines), records (raw records -> typed values),
sync (Binance's sync procedure + grid sampling + gaps), grid (grid times, rows in units),
reader (raw files in receive order, by zstd frame), scan (one read: records -> machine and
trades; scan_checked: the checked per-line path, scan_resume: the next hour's start),
checkpoint (end-of-hour state), partitions (Parquet), rebuild (one hour end to end).
"""

from midas.book.rebuild import RebuildResult, raw_hours, rebuild_hour

__all__ = ["RebuildResult", "raw_hours", "rebuild_hour"]
