"""`midas chart`: one PNG per symbol-hour from the features dataset (SPEC §3).

Four panels over the hour, on exchange time (UTC):
  1. midprice with the best bid / best ask band (the spread),
  2. level-1 and 5-level imbalance,
  3. OFI per grid interval and cumulative OFI (right axis),
  4. taker buy volume (up) and taker sell volume (down), summed into bins.
Intervals without a valid book (rows of `clean/gaps`, and grid times without a row) are shaded.

`chart_data` is pure (tables in, arrays out) and tested on its own; `draw_chart` only draws;
`write_chart` reads the partitions and writes the file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from midas.config import Settings
from midas.errors import DataError
from midas.layout import (US_PER_HOUR, check_symbol, check_venue, format_hour, hour_start_us, parse_hour,
                          partition_file)
from midas.logs import log_kv

logger = logging.getLogger("midas.chart")

FEATURE_COLUMNS = ("ts", "bid_px_01", "ask_px_01", "midprice", "imbalance", "imbalance_5", "ofi",
                   "ofi_cumulative", "taker_buy_volume", "taker_sell_volume")
GAP_COLUMNS = ("start_ts", "end_ts", "reason")
TARGET_VOLUME_BINS = 120
GAP_COLORS = {"sequence_gap": "red", "disconnected": "tab:orange", "no_snapshot": "tab:brown",
              "crossed_book": "magenta", "no rows": "grey"}


@dataclass
class ChartData:
    """Everything the chart draws, as plain arrays (ts in µs, exchange time)."""

    symbol: str
    venue: str
    hour: datetime
    ts: np.ndarray               # int64 µs; NaN-separated series use `breaks` below
    bid: np.ndarray
    ask: np.ndarray
    mid: np.ndarray
    imbalance: np.ndarray
    imbalance_5: np.ndarray
    ofi: np.ndarray
    ofi_cumulative: np.ndarray
    breaks: list[int]            # row indexes i where ts[i] - ts[i-1] > one grid interval
    shaded: list[tuple[int, int, str]]   # (start_us, end_us, reason), clipped to the hour
    volume_bin_us: int
    volume_bin_start: np.ndarray  # int64 µs, start of each bin
    buy_volume: np.ndarray
    sell_volume: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.ts)


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)


def chart_data(features: pa.Table, gaps: pa.Table | None, *, symbol: str, venue: str, hour: datetime,
               interval_us: int) -> ChartData:
    """The arrays of the chart of one symbol-hour. Pure.

    Shaded intervals: every gap row (clipped to the hour), plus every run of missing grid times
    between two rows that no gap row overlaps (reason `no rows`). Missing grid times at the hour's
    edges are not shaded: data may simply start late or end early there.
    """
    hour = parse_hour(hour)
    start_us = hour_start_us(hour)
    end_us = start_us + US_PER_HOUR
    features = features.sort_by("ts")
    ts = features.column("ts").to_numpy(zero_copy_only=False).astype(np.int64)
    step = np.diff(ts)
    breaks = [int(i) + 1 for i in np.nonzero(step > interval_us)[0]]

    shaded: list[tuple[int, int, str]] = []
    if gaps is not None and gaps.num_rows:
        for start, end, reason in zip(gaps.column("start_ts").to_pylist(), gaps.column("end_ts").to_pylist(),
                                      gaps.column("reason").to_pylist()):
            s = start_us if start is None else max(int(start), start_us)
            e = end_us if end is None else min(int(end), end_us)
            if e > s:
                shaded.append((s, e, str(reason)))
    covered = [(s, e) for s, e, _ in shaded]
    for i in breaks:
        s, e = int(ts[i - 1]), int(ts[i])
        if not any(cs < e and s < ce for cs, ce in covered):
            shaded.append((s, e, "no rows"))
    shaded.sort()

    if len(ts):
        span = int(ts[-1] - ts[0]) + interval_us
        bin_us = max(interval_us, -(-span // TARGET_VOLUME_BINS // interval_us) * interval_us)
        first = int(ts[0])                 # bin k holds the rows with ts in [first + k·bin, first + (k+1)·bin)
        n_bins = (int(ts[-1]) - first) // bin_us + 1
        index = ((ts - first) // bin_us).astype(np.int64)
        buy = np.bincount(index, weights=np.nan_to_num(_column(features, "taker_buy_volume")),
                          minlength=n_bins)
        sell = np.bincount(index, weights=np.nan_to_num(_column(features, "taker_sell_volume")),
                           minlength=n_bins)
        bin_start = first + bin_us * np.arange(n_bins, dtype=np.int64)
    else:
        bin_us, buy, sell, bin_start = interval_us, np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)

    return ChartData(
        symbol=symbol, venue=venue, hour=hour, ts=ts,
        bid=_column(features, "bid_px_01"), ask=_column(features, "ask_px_01"),
        mid=_column(features, "midprice"), imbalance=_column(features, "imbalance"),
        imbalance_5=_column(features, "imbalance_5"), ofi=_column(features, "ofi"),
        ofi_cumulative=_column(features, "ofi_cumulative"), breaks=breaks, shaded=shaded,
        volume_bin_us=bin_us, volume_bin_start=bin_start, buy_volume=buy, sell_volume=sell)


def _with_breaks(ts: np.ndarray, values: np.ndarray, breaks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Insert a NaN at every break so lines are not drawn across missing stretches."""
    times = ts.astype("datetime64[us]")
    if not breaks:
        return times, values
    return np.insert(times, breaks, times[np.array(breaks) - 1]), np.insert(values, breaks, np.nan)


def draw_chart(data: ChartData, path: Path) -> Path:
    """Draw the four panels into a PNG at `path` (written to a temp name, then renamed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(13, 11), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1.4, 1.6, 1.6]})
    ax_px, ax_imb, ax_ofi, ax_vol = axes
    as_time = lambda us: np.asarray(us, dtype=np.int64).astype("datetime64[us]")  # noqa: E731

    t, mid = _with_breaks(data.ts, data.mid, data.breaks)
    _, bid = _with_breaks(data.ts, data.bid, data.breaks)
    _, ask = _with_breaks(data.ts, data.ask, data.breaks)
    ax_px.fill_between(t, bid, ask, color="tab:blue", alpha=0.25, linewidth=0, label="bid–ask (spread)")
    ax_px.plot(t, mid, color="tab:blue", linewidth=0.8, label="midprice")
    ax_px.set_ylabel("price")
    ax_px.ticklabel_format(axis="y", useOffset=False, style="plain")

    _, imb = _with_breaks(data.ts, data.imbalance, data.breaks)
    _, imb5 = _with_breaks(data.ts, data.imbalance_5, data.breaks)
    ax_imb.plot(t, imb, color="tab:purple", linewidth=0.5, label="imbalance (level 1)")
    ax_imb.plot(t, imb5, color="tab:orange", linewidth=0.8, label="imbalance (5 levels)")
    ax_imb.set_ylim(-1.05, 1.05)
    ax_imb.axhline(0, color="grey", linewidth=0.5)
    ax_imb.set_ylabel("imbalance")

    _, ofi = _with_breaks(data.ts, data.ofi, data.breaks)
    _, cum = _with_breaks(data.ts, data.ofi_cumulative, data.breaks)
    ax_ofi.plot(t, ofi, color="tab:green", linewidth=0.5, label="OFI per interval")
    ax_ofi.set_ylabel("OFI")
    ax_cum = ax_ofi.twinx()
    ax_cum.plot(t, cum, color="black", linewidth=1.0, label="cumulative OFI (day)")
    ax_cum.set_ylabel("cumulative OFI")

    width = np.timedelta64(int(data.volume_bin_us * 0.9), "us")
    bins = as_time(data.volume_bin_start) + np.timedelta64(data.volume_bin_us // 2, "us")
    ax_vol.bar(bins, data.buy_volume, width=width, color="tab:green", label="taker buy")
    ax_vol.bar(bins, -data.sell_volume, width=width, color="tab:red", label="taker sell")
    ax_vol.axhline(0, color="grey", linewidth=0.5)
    ax_vol.set_ylabel(f"volume / {data.volume_bin_us / 1e6:g} s")

    reasons_seen: set[str] = set()
    for s, e, reason in data.shaded:
        for ax in axes:
            ax.axvspan(as_time(s), as_time(e), color=GAP_COLORS.get(reason, "tab:purple"), alpha=0.15,
                       linewidth=0,
                       label=(f"no book: {reason}" if ax is ax_px and reason not in reasons_seen else None))
        reasons_seen.add(reason)

    for ax in (ax_px, ax_imb, ax_vol):
        ax.legend(loc="upper left", fontsize=8)
    lines = ax_ofi.get_legend_handles_labels()
    lines_cum = ax_cum.get_legend_handles_labels()
    ax_ofi.legend(lines[0] + lines_cum[0], lines[1] + lines_cum[1], loc="upper left", fontsize=8)
    ax_vol.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax_vol.set_xlabel("exchange time (UTC)")
    fig.suptitle(f"{data.symbol} on {data.venue}, {format_hour(data.hour)} UTC: {data.rows} book rows, "
                 f"{len(data.shaded)} stretch(es) without a book")
    fig.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def default_chart_path(data_dir: Path, venue: str, symbol: str, hour: datetime) -> Path:
    """`<DATA_DIR>/charts/<venue>/<SYMBOL>_<YYYYMMDD>T<HH>.png`."""
    hour = parse_hour(hour)
    return Path(data_dir) / "charts" / check_venue(venue) / f"{check_symbol(symbol)}_{hour:%Y%m%dT%H}.png"


def _read(path: Path, columns: tuple[str, ...], what: str) -> pa.Table:
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: cannot read the {what} partition ({e})") from None
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise DataError(f"{path}: the {what} partition lacks column(s) {', '.join(missing)}; "
                        "re-run the features for this hour")
    return pq.read_table(path, columns=list(columns))


def write_chart(settings: Settings, venue: str, symbol: str, hour: datetime, out: Path | None = None) -> Path:
    """Read the features (and gaps) partition of one symbol-hour and write its chart. Returns the path."""
    hour = parse_hour(hour)
    symbol = check_symbol(symbol)
    features_path = partition_file(settings.data_dir, "features", venue, symbol, hour)
    if not features_path.is_file():
        raise DataError(f"no features for {symbol} on {venue} at {format_hour(hour)} (looked for "
                        f"{features_path}): process that hour first (`midas inspect` lists what exists)")
    features = _read(features_path, FEATURE_COLUMNS, "features")
    if features.num_rows == 0:
        raise DataError(f"{features_path}: the features partition of {symbol} {format_hour(hour)} "
                        "has no rows (the book was never in sync in that hour); nothing to draw")
    gaps_path = partition_file(settings.data_dir, "gaps", venue, symbol, hour)
    gaps = _read(gaps_path, GAP_COLUMNS, "gaps") if gaps_path.is_file() else None
    data = chart_data(features, gaps, symbol=symbol, venue=venue, hour=hour,
                      interval_us=settings.snapshot_interval_us)
    path = draw_chart(data, out or default_chart_path(settings.data_dir, venue, symbol, hour))
    log_kv(logger, "chart written", venue=venue, symbol=symbol, hour=format_hour(hour), file=path,
           rows=data.rows, shaded=len(data.shaded))
    return path
