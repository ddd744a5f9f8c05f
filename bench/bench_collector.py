"""Collector throughput against the local exchange, as a ratio to a client that only receives and
counts, measured in the same run.

A. Capacity: the real spot recording (99,573 messages: depth, trade, bookTicker) replayed by a
   `midas exchange` process at speed 0 (as fast as the client reads). The counting client, then
   the collector (in this process, writing real raw files), each receive the whole recording;
   messages/s from first to last message, best of 2. Zero loss: every recorded message written.
B. 200 symbols (futures) simulated by an exchange process (`tick_ms` sets the diff rate): the
   collector runs as a `midas collect` process while the counting client listens to the same
   streams. CPU and RSS of the collector process are sampled every 5 s. Zero loss: no gap event,
   depth `pu` chains and trade ids unbroken in the raw files of every symbol.

Run: `.venv/bin/python -m bench collector`; MIDAS_BENCH_SECS (default 120) sets the length of B,
MIDAS_BENCH_TICK_MS (default 100) its diff interval, MIDAS_BENCH_PARTS=A runs part A only.
Appends a section to bench/RESULTS.md (MIDAS_BENCH_RESULTS=path writes elsewhere).
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from websockets.asyncio.client import connect

from midas.collector.service import Collector, CollectorOptions
from midas.config import load_settings
from midas.layout import list_raw_files
from midas.raw import RawFileReader
from midas.venues import get_venue, stream_names

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("MIDAS_BENCH_RESULTS", REPO / "bench" / "RESULTS.md"))
SPOT = REPO.parent / "shared" / "data" / "binance" / "spot-btcusdt-2024-08-08T2354.txt.gz"
SPOT_MESSAGES = 6495 + 19904 + 73174
PY = sys.executable


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} x {platform.machine()}, {cpu}"


class ExchangeProcess:
    """A local exchange in its own process (so it does not share this process's GIL)."""

    def __init__(self, **kwargs):
        code = ("import sys\nfrom midas.exchange import LocalExchange\n"
                f"with LocalExchange(**{kwargs!r}) as ex:\n"
                "    print(ex.ws_url, flush=True)\n    sys.stdin.read()\n")
        env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", LOG_LEVEL="WARNING")
        self.proc = subprocess.Popen([PY, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
        self.ws_url = self.proc.stdout.readline().strip()
        if not self.ws_url.startswith("ws://"):
            raise RuntimeError(f"the exchange did not start: {self.ws_url!r}")
        self.rest_url = "http" + self.ws_url[2:]

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def count_messages(url: str, until_count: int | None, seconds: float | None) -> tuple[int, float]:
    """Receive and count; returns (messages, seconds from the first to the last message)."""
    n = 0
    first = last = None
    deadline = None
    async with connect(url, max_size=None, ping_interval=None, compression=None, max_queue=256) as ws:
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(ws.recv(), timeout=timeout) if timeout is not None else await ws.recv()
            except TimeoutError:
                break
            now = time.monotonic()
            if first is None:
                first = now
                if seconds is not None:
                    deadline = now + seconds
            last = now
            n += 1
            if until_count is not None and n >= until_count:
                break
    return n, (last - first) if first is not None else 0.0


def capacity(tmp: Path) -> dict:
    """Part A: the spot recording at speed 0, counting client vs collector."""
    ex = ExchangeProcess(venue="binance", replay=[str(SPOT)], speed=0)
    try:
        names = stream_names("BTCUSDT", ["depth", "trade", "bookTicker"])
        url = get_venue("binance").combined_stream_url(ex.ws_url, names)
        base = []
        for _ in range(2):
            cpu0 = _cpu()
            n, secs = asyncio.run(count_messages(url, SPOT_MESSAGES, None))
            base.append((n / secs, n, n / (_cpu() - cpu0)))
        coll = []
        for i in range(2):
            data = tmp / f"capacity-{i}"
            settings = load_settings(env_file=None, data_dir=data, ws_url=ex.ws_url, rest_url=ex.rest_url,
                                     venue="binance", symbols=["BTCUSDT"],
                                     streams=["depth", "trade", "bookTicker"], stall_timeout_secs=300)
            collector = Collector(settings, CollectorOptions(health_interval_secs=3600))
            stop = threading.Event()

            def run() -> None:
                async def main():
                    s = asyncio.Event()

                    async def watch():
                        while not stop.is_set():
                            await asyncio.sleep(0.05)
                        s.set()
                    asyncio.create_task(watch())
                    return await collector.run(None, s)
                asyncio.run(main())

            t = threading.Thread(target=run)
            cpu0 = _cpu()
            t.start()
            while sum(collector.router.accepted.values()) < SPOT_MESSAGES:
                time.sleep(0.05)
            cpu = _cpu() - cpu0
            stop.set()
            t.join()
            ts = [rec["local_ts"] for p in list_raw_files(data, "binance", "BTCUSDT")
                  for _, rec in RawFileReader(p).iter_records() if rec["type"] in ("depth", "trade", "book_ticker")]
            coll.append((len(ts) / ((ts[-1] - ts[0]) / 1e6), len(ts), len(ts) / cpu))
        return {"baseline": max(base), "collector": max(coll)}
    finally:
        ex.close()


def _cpu() -> float:
    """CPU seconds used by this process so far (user + system): steadier than wall time on a
    shared box, since waiting for a core does not count."""
    t = os.times()
    return t.user + t.system


def proc_sample(pid: int) -> tuple[float, int]:
    """(CPU seconds used, RSS bytes) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return cpu, rss


def check_no_loss(data: Path, symbols: list[str]) -> tuple[int, int, int]:
    """(data records, gap events, sequence breaks) over every raw file of every symbol."""
    records = gaps = breaks = 0
    for s in symbols:
        last_u = last_t = None
        for p in list_raw_files(data, "binance-futures", s):
            for _, rec in RawFileReader(p).iter_records():
                t = rec["type"]
                if t == "event":
                    if rec["event"] == "gap":
                        gaps += 1
                    if rec["event"] in ("disconnected", "connected"):
                        last_u = last_t = None
                    continue
                if t == "depth":
                    records += 1
                    if last_u is not None and rec["prev_update_id"] != last_u:
                        breaks += 1
                    last_u = rec["last_update_id"]
                elif t == "trade":
                    records += 1
                    if last_t is not None and rec["trade_id"] != last_t + 1:
                        breaks += 1
                    last_t = rec["trade_id"]
    return records, gaps, breaks


def many_symbols(tmp: Path, seconds: float, tick_ms: int) -> dict:
    """Part B: 200 symbols, the collector process next to a counting client."""
    symbols = [f"S{i:03d}USDT" for i in range(200)]
    ex = ExchangeProcess(venue="binance-futures", symbols=symbols, seed=1, tick_ms=tick_ms)
    data = tmp / "many"
    try:
        env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false")
        cmd = [PY, "-m", "midas.cli", "--log-level", "WARNING", "collect", "--venue", "binance-futures",
               "--symbols", ",".join(symbols), "--data-dir", str(data), "--ws-url", ex.ws_url,
               "--rest-url", ex.rest_url, "--duration", str(seconds + 5)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        names = [n for s in symbols for n in stream_names(s, ["depth", "trade"])]
        url = get_venue("binance-futures").combined_stream_url(ex.ws_url, names)
        samples = []
        box = {}

        def counter() -> None:
            box["count"] = asyncio.run(count_messages(url, None, seconds))

        t = threading.Thread(target=counter)
        t.start()
        start = time.monotonic()
        while proc.poll() is None:
            try:
                samples.append((time.monotonic() - start,) + proc_sample(proc.pid))
            except (OSError, IndexError):
                break
            time.sleep(5)
        out = proc.stdout.read()
        t.join()
        if proc.returncode != 0:
            raise RuntimeError(f"midas collect failed:\n{out[-2000:]}")
    finally:
        ex.close()
    records, gaps, breaks = check_no_loss(data, symbols)
    return {"samples": samples, "records": records, "gaps": gaps, "breaks": breaks,
            "seconds": seconds + 5, "baseline": box["count"]}


def main() -> str:
    seconds = float(os.environ.get("MIDAS_BENCH_SECS", "120"))
    tick_ms = int(os.environ.get("MIDAS_BENCH_TICK_MS", "100"))
    parts = os.environ.get("MIDAS_BENCH_PARTS", "AB").upper()
    tmp = Path(tempfile.mkdtemp(prefix="midas-bench-collector-"))
    try:
        a = capacity(tmp)
        b = many_symbols(tmp, seconds, tick_ms) if "B" in parts else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (base_rate, base_n, base_cpu_rate), (coll_rate, coll_n, coll_cpu_rate) = a["baseline"], a["collector"]
    lines = [
        f"## collector ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()})",
        "",
        "A. capacity, real spot recording replayed at speed 0 (exchange in its own process):",
        f"- receive-and-count client: {base_rate:,.0f} msg/s ({base_n:,} messages)",
        f"- collector (parse, track, de-duplicate, write zstd raw files): {coll_rate:,.0f} msg/s "
        f"({coll_n:,} of {SPOT_MESSAGES:,} messages written: "
        f"{'zero loss' if coll_n == SPOT_MESSAGES else 'LOSS'})",
        f"- ratio collector / counting client: {coll_rate / base_rate:.2f}x (wall clock)",
        f"- per CPU second (what one free core sustains): counting client {base_cpu_rate:,.0f} msg/s, "
        f"collector {coll_cpu_rate:,.0f} msg/s, ratio {coll_cpu_rate / base_cpu_rate:.2f}x",
        "",
    ]
    if b is not None:
        lines += part_b_lines(b, tick_ms)
    text = "\n".join(lines)
    print(text)
    with open(RESULTS, "a") as fh:
        fh.write("\n" + text)
    return text


def part_b_lines(b: dict, tick_ms: int) -> list[str]:
    cnt_n, cnt_secs = b["baseline"]
    samples = b["samples"]
    cpu_pct = [100 * (c2 - c1) / (t2 - t1) for (t1, c1, _), (t2, c2, _) in zip(samples, samples[1:])]
    third = max(1, len(cpu_pct) // 3)
    rss = [r for _, _, r in samples]
    coll_rate_b = b["records"] / b["seconds"]
    base_rate_b = cnt_n / cnt_secs if cnt_secs else 0.0
    return [
        f"B. 200 futures symbols, depth@100ms + trade, exchange tick {tick_ms} ms, "
        f"{b['seconds']:.0f} s `midas collect` process next to a counting client:",
        f"- counting client: {base_rate_b:,.0f} msg/s; collector wrote {coll_rate_b:,.0f} msg/s "
        f"(ratio {coll_rate_b / base_rate_b if base_rate_b else 0:.2f}x; the collector's window includes "
        f"its start-up)",
        f"- loss check: {b['records']:,} records, {b['gaps']} gap events, {b['breaks']} broken pu/trade-id "
        f"chains",
        f"- collector CPU: {sum(cpu_pct[:third]) / third:.0f} % first third, "
        f"{sum(cpu_pct[-third:]) / third:.0f} % last third of the run (of one core)",
        f"- collector RSS: {rss[0] / 2**20:.0f} MB at {samples[0][0]:.0f} s, {rss[len(rss) // 2] / 2**20:.0f} MB "
        f"mid-run, {rss[-1] / 2**20:.0f} MB at {samples[-1][0]:.0f} s",
        "",
    ]


if __name__ == "__main__":
    main()
