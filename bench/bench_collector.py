"""Collector throughput against the local exchange, as a ratio to a client that only receives and
counts, measured in the same run.

A. Capacity: the real spot recording (99,573 messages: depth, trade, bookTicker) replayed by a
   `midas exchange` process at speed 0 (as fast as the client reads). In each of MIDAS_BENCH_ROUNDS
   (default 3) rounds, one after the other, each receives the whole recording on its own connection:
   - the counting client (the baseline): websockets' standard client (`connect`, no compression,
     no keepalive pings, the same `max_size`/`max_queue` as the collector), `await ws.recv()` in a
     loop, each message decoded to `str` as `recv()` does by default, counted, nothing else;
   - the collector (in this process: parse, validate, track, de-duplicate, write zstd raw files);
   - a counter on the collector's own receive path (`DeliveringConnection`: messages handed to a
     callback from the socket reads, no `recv()` queue), which only counts: the floor of that path.
   Figures: messages per CPU second of this process (steady on a shared box) and per wall second
   from first to last message; medians over the rounds. Zero loss: every recorded message written.
B. 200 symbols (futures) simulated by an exchange process (`tick_ms` sets the diff rate): the
   collector runs as a `midas collect` process while the counting client listens to the same
   streams (depth on /public, trades on /market, one socket each, as Binance routes them). CPU
   and RSS of the collector process are sampled every 5 s. Zero loss: no gap event, depth `pu`
   chains and trade ids unbroken in the raw files of every symbol.

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
import statistics
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from websockets.asyncio.client import connect

from midas.collector.websocket import DeliveringConnection
from midas.collector.service import Collector, CollectorOptions
from midas.config import load_settings
from midas.layout import list_raw_files
from midas.raw import RawFileReader
from midas.venues import STREAM_ROUTES, get_venue, stream_names

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


async def count_delivered(url: str, until_count: int) -> tuple[int, float]:
    """Count on the collector's receive path (`DeliveringConnection`); (messages, first-to-last secs)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    box = {"n": 0, "first": None, "last": None}

    def deliver(message, local_ts, received_at) -> None:
        now = time.monotonic()
        if box["first"] is None:
            box["first"] = now
        box["last"] = now
        box["n"] += 1
        if box["n"] >= until_count and not done.done():
            done.set_result(None)

    ws = await connect(url, max_size=None, ping_interval=None, compression=None, max_queue=256,
                       create_connection=lambda *a, **kw: DeliveringConnection(*a, deliver=deliver, **kw))
    try:
        await done
    finally:
        await ws.close()
    return box["n"], box["last"] - box["first"]


def collect_recording(ex: ExchangeProcess, data: Path) -> tuple[int, float, float]:
    """The collector receives the whole recording: (records written, wall secs first to last, CPU secs)."""
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
    return len(ts), (ts[-1] - ts[0]) / 1e6, cpu


def capacity(tmp: Path, rounds: int) -> dict:
    """Part A: the spot recording at speed 0; per round the counting client, the collector and the
    counter on the collector's receive path. Returns per-round (wall msg/s, CPU msg/s, messages)."""
    ex = ExchangeProcess(venue="binance", replay=[str(SPOT)], speed=0)
    out = {"baseline": [], "collector": [], "floor": []}
    try:
        names = stream_names("BTCUSDT", ["depth", "trade", "bookTicker"])
        url = get_venue("binance").combined_stream_url(ex.ws_url, names)
        for i in range(rounds):
            cpu0 = _cpu()
            n, secs = asyncio.run(count_messages(url, SPOT_MESSAGES, None))
            out["baseline"].append((n / secs, n / (_cpu() - cpu0), n))
            n, secs, cpu = collect_recording(ex, tmp / f"capacity-{i}")
            out["collector"].append((n / secs, n / cpu, n))
            cpu0 = _cpu()
            n, secs = asyncio.run(count_delivered(url, SPOT_MESSAGES))
            out["floor"].append((n / secs, n / (_cpu() - cpu0), n))
        return out
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
        # Binance's USD-M routes, as the collector uses them: depth on /public, trades on /market.
        spec = get_venue("binance-futures")
        urls = [spec.combined_stream_url(ex.ws_url + spec.route_path(STREAM_ROUTES[kind]),
                                         [n for s in symbols for n in stream_names(s, [kind])])
                for kind in ("depth", "trade")]
        samples = []
        box = {}

        def counter() -> None:
            async def both():
                return await asyncio.gather(*(count_messages(url, None, seconds) for url in urls))
            counts = asyncio.run(both())
            box["count"] = (sum(n for n, _ in counts), max(secs for _, secs in counts))

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
    rounds = int(os.environ.get("MIDAS_BENCH_ROUNDS", "3"))
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="midas-bench-collector-"))
    try:
        a = capacity(tmp, rounds)
        load_after = os.getloadavg()[0]
        b = many_symbols(tmp, seconds, tick_ms) if "B" in parts else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        f"## collector ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}, "
        f"load average {load_before:.1f} before part A, {load_after:.1f} after)",
        "",
        *part_a_lines(a),
    ]
    if b is not None:
        lines += part_b_lines(b, tick_ms)
    text = "\n".join(lines)
    print(text)
    with open(RESULTS, "a") as fh:
        fh.write("\n" + text)
    return text


def part_a_lines(a: dict) -> list[str]:
    def med(who: str, i: int) -> float:
        return statistics.median(r[i] for r in a[who])

    written = [r[2] for r in a["collector"]]
    loss = "zero loss in every round" if all(n == SPOT_MESSAGES for n in written) else f"LOSS: {written}"
    rows = [f"| {k + 1} | {b[1]:,.0f} | {c[1]:,.0f} | {c[1] / b[1]:.2f}x | {f[1]:,.0f} | {c[1] / f[1]:.2f}x "
            f"| {b[0]:,.0f} | {c[0]:,.0f} | {c[0] / b[0]:.2f}x |"
            for k, (b, c, f) in enumerate(zip(a["baseline"], a["collector"], a["floor"]))]
    return [
        f"A. capacity: the real spot recording ({SPOT_MESSAGES:,} messages) replayed at speed 0 by an "
        f"exchange process; {len(rows)} rounds of counting client, collector, counter on the collector's "
        f"receive path ({loss}):",
        "",
        "| round | counting client msg/CPU-s | collector msg/CPU-s | ratio | receive-path counter msg/CPU-s "
        "| collector / it | counting client msg/s wall | collector msg/s wall | ratio wall |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Medians: counting client {med('baseline', 1):,.0f} msg per CPU second, collector "
        f"{med('collector', 1):,.0f} (**{med('collector', 1) / med('baseline', 1):.2f}x**); wall "
        f"{med('baseline', 0):,.0f} vs {med('collector', 0):,.0f} msg/s "
        f"({med('collector', 0) / med('baseline', 0):.2f}x). The collector's own receive path only counting: "
        f"{med('floor', 1):,.0f} msg per CPU second (collector / it: "
        f"{med('collector', 1) / med('floor', 1):.2f}x).",
        "",
    ]


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
