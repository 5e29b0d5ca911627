"""Smoke test of `petstream bench pipeline --quick`: the harness runs end to end and reports its raw inputs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from bench.load import looped, percentile, session_stats_from_log, sum_stats
from bench.pipeline import main
from ingest.session_stats import SessionStats
from simulators.video import EncodedUnit


def test_session_stats_are_parsed_from_the_disconnect_line(tmp_path: Path) -> None:
    stats = SessionStats(frames_decoded=30, frames_sampled=3, frames_scored=2)
    stats.dropped = Counter({"backpressure": 1})
    stats.warnings = Counter({"FRAMES_DROPPED": 1})
    log = tmp_path / "server.log"
    log.write_text(f"2026 INFO ingest.server: camera cam-1 disconnected (session ab12cd34ef56): {stats}\n")
    parsed = session_stats_from_log(str(log))
    assert parsed["cam-1"]["frames_decoded"] == 30
    assert parsed["cam-1"]["dropped"] == {"backpressure": 1}
    total = sum_stats(parsed, ["cam-1", "cam-2"])
    assert total["sessions_logged"] == 1 and total["frames_scored"] == 2


def test_session_stats_are_parsed_from_json_log_lines_too(tmp_path: Path) -> None:
    line = {"event": "stream_close", "device_id": "cam-2", "totals": {"frames_scored": 5, "dropped": {"stale": 1}}}
    log = tmp_path / "server.log"
    log.write_text('{"event": "stream_open", "device_id": "cam-2"}\n' + json.dumps(line) + "\nnot json {\n")
    parsed = session_stats_from_log(str(log))
    assert parsed == {"cam-2": {"frames_scored": 5, "dropped": {"stale": 1}}}
    assert sum_stats(parsed, ["cam-2"])["dropped"] == {"stale": 1}


def test_looped_clip_keeps_pts_increasing() -> None:
    clip = [EncodedUnit(b"x", i * 66_667, i == 0) for i in range(3)]
    pts = [u.pts_us for u in looped(clip, 3)]
    assert len(pts) == 9 and pts == sorted(pts) and len(set(pts)) == 9


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile([], 99) is None


def test_quick_run_writes_every_metric_with_its_raw_inputs(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "pipeline.json"
    assert main(str(out), quick=True) == 0
    assert "pipeline_efficiency" in capsys.readouterr().out  # the table was printed
    r = json.loads(out.read_text())
    s = r["summary"]
    for key in ("pipeline_efficiency", "decode_limit_streams", "ingest_streams_full_decode", "p99_frame_to_event_ms"):
        assert s[key] is not None and s[key] > 0, key
    full = r["ingest"]["raw"]["rate"][0]
    assert full["errors"] == [] and full["frames_sent"] > 0
    assert full["server"]["sessions_logged"] == full["cameras"]  # server-side counters were read back
    assert full["server"]["frames_decoded"] == full["frames_sent"]  # every frame decoded
    rate = r["motion"]["policies"]["rate"]
    assert rate["available"] and sum(rate["raw"]["model_calls"]) > 0
    pipe = r["pipeline"]["raw"]
    assert pipe["engine_alone"][0]["frames"] > 0 and pipe["saturated"]["frames_scored_in_window"] > 0
    assert r["machine"]["cores"] >= 1 and set(r["summary"]["targets"]) >= {"pipeline_efficiency", "gated_vs_full"}
