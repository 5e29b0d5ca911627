"""Structured logs: `--log-format json` gives one JSON object per line, one line per stream open and close with
its totals, and no per-frame lines at INFO; progress bars stay quiet off a terminal."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from factories import square_units

from petstream.logs import JsonFormatter
from petstream.progress import bar, enabled
from simulators.camera import run_camera
from simulators.fleet import server_process


def test_json_server_log_has_one_line_per_stream_open_and_close_with_totals(tmp_path):
    log_path = tmp_path / "server.log"
    units = square_units(3.0)  # 45 frames
    with server_process(["--model", "tiny", "--dtype", "fp32", "--log-format", "json"], log_path=str(log_path)) as a:

        async def two() -> list:
            return list(
                await asyncio.gather(
                    *(run_camera(a, f"cam-{i}", units, speed=0, sample_fps=2.0, want_scores=True) for i in range(2))
                )
            )

        reports = asyncio.run(two())
    lines = [ln for ln in log_path.read_text().splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    opens = [r for r in records if r.get("event") == "stream_open"]
    closes = [r for r in records if r.get("event") == "stream_close"]
    assert sorted(r["device_id"] for r in opens) == sorted(r["device_id"] for r in closes) == ["cam-0", "cam-1"]
    for close in closes:
        totals = close["totals"]
        report = next(r for r in reports if r.device_id == close["device_id"])
        assert totals["frames_decoded"] == report.units_sent == 45
        assert totals["frames_scored"] == len(report.scores) == 6 and close["duration_s"] > 0
    assert {r["sampling"] for r in opens} == {"rate"} and all(r["codec"] == "h264" for r in opens)
    # nothing per frame at INFO: 90 frames decoded, 12 scored, and only a handful of lines in all
    per_camera = [r for r in records if r["level"] == "INFO" and "cam-" in r["message"]]
    assert len(per_camera) == 4, [r["message"] for r in per_camera]


def test_json_formatter_merges_fields_and_keeps_exceptions():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.fields = {"event": "stream_open", "device_id": "cam", "message": "not overwritten"}
    out = json.loads(JsonFormatter().format(record))
    assert out["message"] == "hello you" and out["event"] == "stream_open" and out["device_id"] == "cam"


def test_progress_bars_are_quiet_in_pipes_and_ci(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("NO_PROGRESS", raising=False)
    assert enabled(Tty()) and not enabled(io.StringIO())
    monkeypatch.setenv("CI", "true")
    assert not enabled(Tty())
    quiet = bar(range(3), total=3)  # stderr is not a terminal under pytest
    assert list(quiet) == [0, 1, 2]
    quiet.update(1)
    quiet.set_postfix_str("x")
    quiet.close()
