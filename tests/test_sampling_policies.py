"""Sampling policies on real encoded video: keyframes-only, motion gating, compressed-domain gating, governor."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from factories import FakeEngine, encode_annexb, moving_square_frames, running_server

from ingest.decoder import StreamDecoder
from simulators.camera import run_camera
from simulators.timeline import Period, Timeline
from simulators.video import EncodedUnit, synthetic_units
from streaming import sampler as sampling
from streaming.governor import GovernorPolicy, RateGovernor


@pytest.fixture(scope="module")
def scripted_units() -> tuple[Timeline, list[EncodedUnit]]:
    """30 s at 320x180, 15 fps, GOP 30: still 0-12 s, barking 12-20 s, still (asleep) 20-30 s."""
    timeline = Timeline((Period(0, 12), Period(12, 20, frozenset({"barking"})), Period(20, 30, sleeping=True)))
    units = list(synthetic_units(5, width=320, height=180, fps=15, gop=30, duration_s=30, timeline=timeline))
    return timeline, units


def _run_policy(name: str, units: list[EncodedUnit], fps: float = 1.0, recheck: float = 20.0):
    s = sampling.create(name, fps, still_recheck_s=recheck)
    dec = StreamDecoder("h264", decode_mode=s.decode_mode, want_packet=s.want_packet)
    decoded, not_decoded, picked = 0, 0, []
    results = (dec.feed(u.data, u.pts_us) for u in units)
    for r in [*results, dec.flush()]:
        not_decoded += r.not_decoded
        for f in r.frames:
            decoded += 1
            thumb = None
            if s.needs_thumbnail:
                w, h = sampling.THUMB_SIZE
                thumb = f.frame.to_ndarray(format="gray", width=w, height=h, interpolation="AREA")
            if f.candidate and s.should_sample(sampling.FrameInfo(f.pts_us, f.key_frame, thumb)):
                picked.append(f.pts_us / 1e6)
    return decoded, not_decoded, picked


def test_keyframes_policy_decodes_only_keyframes(scripted_units):
    _, units = scripted_units
    decoded, not_decoded, picked = _run_policy("keyframes", units)
    keys = [u.pts_us / 1e6 for u in units if u.key]
    assert decoded == len(keys) == 15 and not_decoded == len(units) - len(keys)
    assert picked == pytest.approx(keys)


@pytest.mark.parametrize("policy", ["motion", "compressed"])
def test_gating_looks_at_every_active_second_and_rarely_at_a_still_scene(scripted_units, policy):
    timeline, units = scripted_units
    decoded, not_decoded, picked = _run_policy(policy, units)
    active = [t for t in picked if timeline.labels_at(t)]
    assert {int(t) for t in active} == set(range(12, 20))  # every second of barking was looked at
    still_late = [t for t in picked if t >= 24]  # asleep for 4 s already: only a re-check may remain
    assert len(still_late) <= 1, picked
    rate_decoded, _, rate_picked = _run_policy("rate", units)
    assert len(picked) <= 0.6 * len(rate_picked)  # 30 s with 8 s active; encoder start-up counts as motion
    if policy == "compressed":
        assert not_decoded >= len(units) // 3 and decoded + not_decoded == rate_decoded


def test_gated_decoding_replays_the_gop_so_pictures_are_right():
    units = encode_annexb(moving_square_frames(30), gop=15)
    wanted = {units[9][1], units[22][1]}  # mid-GOP frames only
    dec = StreamDecoder("h264", decode_mode="gated", want_packet=lambda size, key, pts: pts in wanted)
    full = StreamDecoder("h264")
    gated_frames, full_frames = {}, {}
    for d, p, _ in units:
        gated_frames |= {f.pts_us: f for f in dec.feed(d, p).frames if f.candidate}
        full_frames |= {f.pts_us: f for f in full.feed(d, p).frames}
    assert set(gated_frames) == wanted
    for pts in wanted:
        a = gated_frames[pts].frame.to_ndarray(format="rgb24")
        b = full_frames[pts].frame.to_ndarray(format="rgb24")
        assert np.array_equal(a, b)


def test_governor_cuts_rate_only_for_a_standing_queue_and_restores_it():
    g = RateGovernor(GovernorPolicy(decrease=0.5, increase=2.0, recover_after_s=2, min_scale=0.1, window_s=2))
    # bursts: some batches wait long, but the queue drains within the window -> no cut
    assert not g.tick(waits_ms=[3000, 20], elapsed_s=1) and not g.tick(waits_ms=[2500], elapsed_s=1)
    assert g.scale == 1.0
    # a standing queue: every batch of the window waited > limit -> cut
    g.tick(waits_ms=[900, 800], elapsed_s=1)
    assert g.tick(waits_ms=[700], elapsed_s=1) and g.scale == 0.5
    # the limit grows with the batch service time: 700 ms is fine for 1 s batches (window 4 s)
    for _ in range(4):
        g.tick(waits_ms=[1500], elapsed_s=1, service_ms=1000)
    assert g.scale == 0.5
    for _ in range(20):
        g.tick(waits_ms=[5000], elapsed_s=1)
    assert g.scale == 0.1  # bounded below
    changes = [g.tick(waits_ms=[], elapsed_s=1) for _ in range(12)]
    assert g.scale == 1.0 and any(changes) and changes[-1] is False


def test_governor_counts_the_configured_batch_wait_as_design_not_overload():
    policy = GovernorPolicy(decrease=0.5, window_s=2)
    short, long = RateGovernor(policy, max_wait_ms=50), RateGovernor(policy, max_wait_ms=1000)
    for g in (short, long):  # every batch's oldest frame waited the long configured batch wait, 1.1 s
        for _ in range(4):
            g.tick(waits_ms=[1100], elapsed_s=1, service_ms=5)
    assert short.scale < 1.0, "with a 50 ms batch wait, 1.1 s of waiting is a standing queue"
    assert long.scale == 1.0, "with a 1 s batch wait, 1.1 s is what batching costs"
    for _ in range(4):
        long.tick(waits_ms=[1600], elapsed_s=1, service_ms=5)
    assert long.scale < 1.0, "beyond the wait plus the overload allowance it is overload again"


def test_governor_restores_the_full_rate_at_once_when_the_model_goes_idle():
    g = RateGovernor(GovernorPolicy(decrease=0.5, recover_after_s=60, window_s=2))
    for _ in range(6):
        g.tick(waits_ms=[5000], elapsed_s=1, queued=8)
    assert g.scale == 0.125
    # no batch started, but frames wait (one very long batch): not idle, no jump
    g.tick(waits_ms=[], elapsed_s=1, queued=3)
    g.tick(waits_ms=[], elapsed_s=1, queued=3)
    assert g.scale == 0.125
    # no batch and nothing waiting for a whole window: the load is gone, full rate for whoever comes next
    g.tick(waits_ms=[], elapsed_s=1, queued=0)
    assert g.tick(waits_ms=[], elapsed_s=1, queued=0) and g.scale == 1.0


def test_sampler_scale_lowers_the_rate():
    s = sampling.create("rate", 2.0)
    s.rate_scale = 0.5
    picked = [t for t in range(0, 10_000_000, 66_667) if s.should_sample(sampling.FrameInfo(t, False))]
    assert len(picked) == 10


def test_server_applies_the_camera_sampling_policy(scripted_units):
    _, units = scripted_units

    async def both(address):
        return await asyncio.gather(
            run_camera(address, "keys", iter(units), speed=0, want_scores=True, sampling="keyframes", sample_fps=15),
            run_camera(address, "gated", iter(units), speed=0, want_scores=True, sampling="compressed"),
        )

    with running_server(FakeEngine()) as address:
        keys, gated = asyncio.run(both(address))
    assert [s.pts_us for s in keys.scores] == [u.pts_us for u in units if u.key]
    assert 8 <= len(gated.scores) <= 18  # barking seconds (8) + encoder start-up + hold, not all 30 seconds
    assert all(s.timings.total_ms > 0 for s in gated.scores)
