"""Replay details: recorded pace, plain-text files, every connection from the start, single
streams, bad recordings; and the `midas exchange` command's errors."""

from __future__ import annotations

import dataclasses
import gzip
import json
import time

import pytest

from midas.cli import main
from midas.errors import DataError
from midas.exchange import Faults, LocalExchange
from midas.exchange.local import fault_flags
from midas.exchange.replay import load_recordings


def _head(recording, seconds: float) -> tuple[list[str], float]:
    """The recording's lines within `seconds` of its first one, and their span in seconds."""
    lines = []
    with gzip.open(recording, "rt") as f:
        first = None
        for line in f:
            ts = int(line.split(" ", 1)[0])
            first = first if first is not None else ts
            if ts - first > seconds * 1e9:
                break
            lines.append(line)
            last = ts
    return lines, (last - first) / 1e9


def test_replay_at_recorded_pace_from_a_plain_file_each_connection_from_the_start(
        recordings, tmp_path, stream_client):
    lines, span = _head(recordings["binance-futures"], 1.6)
    plain = tmp_path / "head.txt"
    plain.write_text("".join(lines))
    envelopes = [line.split(" ", 1)[1].rstrip("\n") for line in lines if '"stream"' in line]
    depth = [json.dumps(json.loads(e)["data"], separators=(",", ":")) for e in envelopes
             if "@depth" in json.loads(e)["stream"]]
    speed = 2.0
    with LocalExchange(replay=plain, speed=speed) as ex:
        # depth and bookTicker only: futures trades come on another route (/market)
        envelopes = [e for e in envelopes if not json.loads(e)["stream"].endswith("@trade")]
        streams = sorted({json.loads(e)["stream"] for e in envelopes})
        first = stream_client(f"{ex.ws_url}/public/stream?streams={'/'.join(streams)}")
        opened = time.monotonic()
        first.wait_for(lambda: len(first.frames) >= len(envelopes), what="the whole head")
        elapsed = first.times[-1] - opened
        # a second connection, later and on a single raw stream, also gets it from the start
        second = stream_client(f"{ex.ws_url}/ws/btcusdt@depth@0ms")
        second.wait_for(lambda: len(second.frames) >= len(depth), what="the depth messages")
    assert first.frames == envelopes
    assert elapsed >= span / speed - 0.1
    assert second.frames == depth


def test_bad_recordings_are_reported_with_file_and_line(tmp_path, recordings):
    bad = tmp_path / "bad.txt"
    bad.write_text('1721347020984480942 {"stream":"btcusdt@trade","data":{"e":"trade"}}\nnot a line\n')
    with pytest.raises(DataError, match=r"bad.txt:2: expected '<local ts ns> <JSON>'"):
        load_recordings([bad])
    broken = tmp_path / "broken.txt"
    broken.write_text('1721347020984480942 {"stream":"btcusdt@trade","data":\n')
    with pytest.raises(DataError, match=r"broken.txt:1: invalid JSON"):
        load_recordings([broken])
    heads = {}
    for venue, path in recordings.items():
        heads[venue] = tmp_path / f"{venue}.txt"
        heads[venue].write_text("".join(_head(path, 0.5)[0]))
    with pytest.raises(DataError, match="mix spot and futures"):
        load_recordings([heads["binance"], heads["binance-futures"]])
    with pytest.raises(DataError, match="are binance-futures data, not binance"):
        LocalExchange(venue="binance", replay=heads["binance-futures"]).start()
    assert load_recordings([heads["binance"]]).venue == "binance"
    with pytest.raises(DataError, match="does not exist"):
        load_recordings([tmp_path / "missing.txt.gz"])


def test_cli_errors_and_help(capsys, tmp_path):
    assert main(["exchange", "--replay"]) == 2
    assert "--replay needs at least one recording file" in capsys.readouterr().err
    assert main(["exchange", "--venue", "kraken", "--port", "0"]) == 2
    assert "VENUE='kraken'" in capsys.readouterr().err
    assert main(["exchange", "--drop-diffs", "-1", "--port", "0"]) == 2
    assert "drop_diffs=-1 must not be negative" in capsys.readouterr().err
    assert main(["exchange", str(tmp_path / "x.txt")]) == 2
    assert "given without --replay" in capsys.readouterr().err
    assert main(["exchange", "--replay", str(tmp_path / "x.txt"), "--symbols", "ETHUSDT"]) == 2
    assert "--symbols does not apply to --replay" in capsys.readouterr().err
    assert main(["exchange", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--truth-dir", "--speed", "--replay", "--seed", "--clock-offset-ms", "--tick-jitter-ms"):
        assert flag in out
    # every fault of the Python API is a flag of the command, and LocalExchange(subprocess=True)
    # passes exactly the ones that differ from the defaults
    for f in dataclasses.fields(Faults):
        assert "--" + f.name.replace("_", "-") in out, f.name
    assert fault_flags(Faults(drop_diffs=2, rest_fail_rate=0.5, rest_fail_status=500)) == [
        "--drop-diffs", "2", "--rest-fail-status", "500", "--rest-fail-rate", "0.5"]


def test_replay_switching_combined_off_mid_stream_keeps_every_message(recordings, tmp_path, stream_client):
    lines, _ = _head(recordings["binance"], 1.0)
    plain = tmp_path / "spot-head.txt"
    plain.write_text("".join(lines))
    envelopes = [line.split(" ", 1)[1].rstrip("\n") for line in lines if '"stream"' in line]
    streams = sorted({json.loads(e)["stream"] for e in envelopes})
    with LocalExchange(replay=plain, speed=1.0) as ex:      # recorded pace: the switch is mid-stream
        client = stream_client(f"{ex.ws_url}/stream?streams={'/'.join(streams)}")
        client.wait_for(lambda: len(client.frames) >= 3, what="three messages")
        client.send({"method": "SET_PROPERTY", "params": ["combined", False], "id": 1})
        client.wait_for(lambda: len(client.frames) >= len(envelopes) + 1, timeout=60, what="everything")
    reply = client.frames.index('{"result":null,"id":1}')
    before, after = client.frames[:reply], client.frames[reply + 1:]
    assert before == envelopes[: len(before)]
    assert [json.loads(f) for f in after] == [json.loads(e)["data"] for e in envelopes[len(before):]]
    assert len(before) >= 3 and len(after) >= 1


def test_faults_apply_to_replay_too(recordings, tmp_path, stream_client):
    lines, span = _head(recordings["binance-futures"], 1.2)
    plain = tmp_path / "futures-head.txt"
    plain.write_text("".join(lines))
    recorded = [json.loads(line.split(" ", 1)[1])["data"] for line in lines if "@depth" in line]
    # one drop window, 1 s into the connection (the next would open at 2 s, after the last diff)
    with LocalExchange(replay=plain, speed=1.0, faults=Faults(drop_diffs=2, drop_every_secs=1.0)) as ex:
        client = stream_client(f"{ex.ws_url}/ws/btcusdt@depth@0ms")
        client.wait_for(lambda: client.frames and json.loads(client.frames[-1])["u"] == recorded[-1]["u"],
                        what="the last recorded diff")
    got = [json.loads(f) for f in client.frames]
    breaks = [(a, b) for a, b in zip(got, got[1:]) if b["pu"] != a["u"]]
    assert len(breaks) == 1 and len(recorded) - len(got) == 2
    a, b = breaks[0]
    i = next(k for k, d in enumerate(recorded) if d["u"] == a["u"])
    assert recorded[i + 3] == b                      # exactly two recorded diffs are missing
    assert [d for d in recorded if d not in (recorded[i + 1], recorded[i + 2])] == got
