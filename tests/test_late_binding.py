"""Late binding, through a real server: a live camera's frame that waits for the model takes a newer picture."""

from __future__ import annotations

import statistics

from factories import FakeEngine, cameras_with_sessions, side_by_side, square_units

from ingest.config import ServerConfig
from simulators.camera import CameraReport, run_camera
from streaming.batcher import BatchPolicy

DELAY_S = 0.6  # the fake model's time per batch of one
SECONDS = 10
POLICY = BatchPolicy(max_batch=1, max_wait_ms=0.0)


def test_a_waiting_frame_is_answered_with_a_newer_picture() -> None:
    units = square_units(SECONDS)

    async def two_cameras(target: str, server: object):  # noqa: ANN202
        """Two live cameras in the same phase at 0.5 frames/s each: every second sample waits one model call."""
        cameras = [
            run_camera(target, f"cam-{i}", units, speed=1.0, want_scores=True, sample_fps=0.5, wait=False)
            for i in range(2)
        ]
        return await cameras_with_sessions(server, cameras)

    results = side_by_side(
        {
            lb: (
                FakeEngine(delay_s=DELAY_S),
                ServerConfig(port=0, model="fake", batch=POLICY, adaptive_rate=False, late_binding=lb),
            )
            for lb in (False, True)
        },
        two_cameras,
    )
    (reports_off, sessions_off), (reports_on, sessions_on) = results[False], results[True]

    def ages_ms(reports: list[CameraReport]) -> list[float]:
        """Server side, per scored frame: chunk arrival -> scores ready."""
        return [f.timings.total_ms for r in reports for f in r.scores]

    for reports, sessions in results.values():
        assert not [r.error for r in reports if r.error]
        for s in sessions.values():  # nothing lost: a refreshed slot is still one sampled frame, answered once
            st = s.stats
            assert st.frames_sampled == st.frames_scored + sum(st.dropped.values()) + st.model_errors, st
            assert st.frames_scored >= 3, st
        for r in reports:  # scores come back in pts order (the event trackers rely on it)
            pts = [f.pts_us for f in r.scores]
            assert pts == sorted(pts)
    assert sum(s.stats.refreshed for s in sessions_off.values()) == 0
    assert sum(s.stats.refreshed for s in sessions_on.values()) > 0
    off, on = ages_ms(reports_off), ages_ms(reports_on)
    # without late binding the second camera's frames wait a whole model call (600 ms) on top of their own;
    # with it they take a picture at most ~70-140 ms older than the model's start
    assert max(off) > 1.5 * DELAY_S * 1e3, off
    assert statistics.mean(on) < statistics.mean(off) - 150, (on, off)
