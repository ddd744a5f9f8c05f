"""The local exchange under load: 200 simulated futures symbols at 100 ms, against 1 symbol as the
baseline measured in the same run.

The exchange runs as a `midas exchange` process (LocalExchange(subprocess=True)); a counting client
in this process subscribes to `<s>@depth@100ms` and `<s>@trade` of every symbol on one combined
connection and, for every diff, takes the delivery lag = receive time - (E - clock offset), i.e.
how late the diff arrived against the 100 ms schedule it was stamped with. The exchange reports its
own tick lag (tick produced vs scheduled) when it stops.

"Without falling behind" means: diffs delivered per second = symbols x 10, and the delivery lag
stays bounded (p99 well under one tick interval, no growth over the run).

Run: `.venv/bin/python -m bench exchange`; MIDAS_BENCH_SECS (default 30) sets each run's length.
Appends a section to bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
from websockets.asyncio.client import connect

from midas.exchange import LocalExchange

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("MIDAS_BENCH_RESULTS", REPO / "bench" / "RESULTS.md"))
OFFSET_MS = 1300


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"nproc {os.cpu_count()}, {platform.machine()}, {cpu}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _count(urls: list[str], seconds: float, warmup: float, pid: int) -> dict:
    """Read every URL at once (futures: depth on /public, trades on /market) for `seconds` after
    `warmup`, counting diffs and trades and the diffs' delivery lag."""
    diffs = trades = 0
    cpu_start = cpu_wall = None
    lags: list[float] = []
    first_half: list[float] = []
    start = time.monotonic()
    measure_from = start + warmup
    end = measure_from + seconds

    async def read(url: str) -> None:
        nonlocal diffs, trades, cpu_start, cpu_wall
        async with connect(url, max_size=None, ping_interval=None, compression=None, max_queue=1024) as ws:
            while True:
                now = time.monotonic()
                if now >= end:
                    break
                try:
                    frame = await asyncio.wait_for(ws.recv(), timeout=end - now)
                except TimeoutError:
                    break
                received_ms = time.time() * 1000
                if time.monotonic() < measure_from:
                    continue
                if cpu_start is None:
                    cpu_start, cpu_wall = cpu_seconds(pid), time.monotonic()
                data = orjson.loads(frame)["data"]
                if data["e"] == "depthUpdate":
                    diffs += 1
                    lag = received_ms - (data["E"] - OFFSET_MS)
                    lags.append(lag)
                    if time.monotonic() < measure_from + seconds / 2:
                        first_half.append(lag)
                else:
                    trades += 1

    await asyncio.gather(*(read(url) for url in urls))
    cpu_share = (cpu_seconds(pid) - cpu_start) / (time.monotonic() - cpu_wall)
    mean_lag = statistics.fmean(lags)
    lags.sort()
    return {
        "exchange_cpu_share_of_one_core": cpu_share,
        "diffs_per_s": diffs / seconds, "trades_per_s": trades / seconds,
        "messages_per_s": (diffs + trades) / seconds,
        "lag_p50_ms": lags[len(lags) // 2], "lag_p99_ms": lags[int(len(lags) * 0.99)],
        "lag_max_ms": lags[-1],
        "lag_mean_first_half_ms": statistics.fmean(first_half) if first_half else float("nan"),
        "lag_mean_all_ms": mean_lag,
    }


def run(symbols: list[str], seconds: float) -> dict:
    with LocalExchange(venue="binance-futures", symbols=symbols, seed=1, subprocess=True,
                       clock_offset_ms=OFFSET_MS) as ex:
        # Binance's USD-M routes: depth on /public, trades on /market (one socket each).
        depth = "/".join(f"{s.lower()}@depth@100ms" for s in symbols)
        trade = "/".join(f"{s.lower()}@trade" for s in symbols)
        result = asyncio.run(_count([f"{ex.ws_url}/public/stream?streams={depth}",
                                     f"{ex.ws_url}/market/stream?streams={trade}"], seconds, warmup=3.0,
                                    pid=ex.process.pid))
    stopped = [line for line in ex.output if "stopped" in line]
    server = dict(re.findall(r"(\w+)=([\d.]+)", stopped[-1])) if stopped else {}
    result["tick_lag_max_ms"] = float(server.get("max_lag_ms", "nan"))
    result["tick_lag_mean_ms"] = float(server.get("mean_lag_ms", "nan"))
    result["symbols"] = len(symbols)
    return result


def main() -> str:
    seconds = float(os.environ.get("MIDAS_BENCH_SECS", "30"))
    many = [f"SYM{i:03d}USDT" for i in range(200)]
    print(f"exchange bench: baseline 1 symbol, then {len(many)} symbols, {seconds:g} s each")
    base = run(["BTCUSDT"], seconds)
    print("baseline:", base)
    load = run(many, seconds)
    print("200 symbols:", load)
    rows = []
    for key in ("exchange_cpu_share_of_one_core", "diffs_per_s", "trades_per_s", "messages_per_s", "lag_p50_ms", "lag_p99_ms", "lag_max_ms",
                "lag_mean_first_half_ms", "lag_mean_all_ms", "tick_lag_mean_ms", "tick_lag_max_ms"):
        b, l = base[key], load[key]
        ratio = f"{l / b:.2f}" if b else "-"
        digits = 3 if key.startswith("exchange_cpu") else 1
        rows.append(f"| {key} | {b:.{digits}f} | {l:.{digits}f} | {ratio} |")
    cpu_per_diff_us = load["exchange_cpu_share_of_one_core"] / load["diffs_per_s"] * 1e6
    needed = cpu_per_diff_us * 2000 / 1e6
    per_symbol = (load["diffs_per_s"] / 200) / base["diffs_per_s"] if base["diffs_per_s"] else float("nan")
    section = "\n".join([
        "",
        f"## Exchange: 200 futures symbols at 100 ms ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {machine()}; load average at the end {os.getloadavg()[0]:.1f} (the box is shared).",
        f"`python -m bench exchange`, {seconds:g} s per run after 3 s warm-up; the",
        "exchange is a `midas exchange` process, one counting client subscribes to depth@100ms and",
        "trade of every symbol on one connection. Lag = receive time - (E - clock offset).",
        "",
        "| figure | 1 symbol (baseline) | 200 symbols | ratio |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Diffs delivered per symbol per second, 200 symbols vs baseline: **{per_symbol:.3f}** "
        f"(1.000 = every diff of every symbol, nothing behind). Expected diffs/s at 200 symbols: 2000.",
        f"Exchange CPU per delivered diff (with its trades): {cpu_per_diff_us:.0f} µs, so 200 symbols at "
        f"100 ms need {needed:.2f} of one core ({needed / (os.cpu_count() or 1):.0%} of this box): the "
        "exchange keeps up whenever the other jobs on the box leave it that much; with less, the lag "
        "grows (the lag rows above show whether it did in this run).",
        "",
    ])
    with open(RESULTS, "a") as f:
        f.write(section)
    print(section)
    return section


if __name__ == "__main__":
    main()
