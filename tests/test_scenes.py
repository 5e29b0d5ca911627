"""Scene generator and timeline: labels, determinism, stillness and visible behavior cues."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.scenes import SceneRenderer, random_scene
from simulators.timeline import BEHAVIORS, Period, Timeline


def make_period(*behaviors: str, present: bool = True, sleeping: bool = False) -> Period:
    return Period(0.0, 30.0, frozenset(behaviors), dog_present=present, sleeping=sleeping)


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("size", [(640, 360), (320, 240), (160, 120)])
def test_random_scene_shape_and_labels(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    seen: set[str] = set()
    empty = 0
    for _ in range(40):
        img, labels = random_scene(rng, *size)
        assert img.shape == (size[1], size[0], 3) and img.dtype == np.uint8
        assert labels <= set(BEHAVIORS)
        seen |= labels
        empty += not labels
    assert seen == set(BEHAVIORS)
    assert 0 < empty < 40


def test_random_scene_deterministic() -> None:
    a = random_scene(np.random.default_rng(7), 320, 180)
    b = random_scene(np.random.default_rng(7), 320, 180)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]


def test_renderer_deterministic_per_seed() -> None:
    p = make_period("barking")
    first = SceneRenderer(3, 320, 180).render(1.3, p)
    assert np.array_equal(first, SceneRenderer(3, 320, 180).render(1.3, p))
    assert not np.array_equal(first, SceneRenderer(4, 320, 180).render(1.3, p))


@pytest.mark.parametrize("period", [make_period(), make_period(sleeping=True), make_period(present=False)])
def test_still_periods_are_still(period: Period) -> None:
    r = SceneRenderer(11, 320, 180)
    assert np.array_equal(r.render(0.0, period), r.render(2.7, period))


@pytest.mark.parametrize("behavior", BEHAVIORS)
def test_behaviors_are_animated_and_visible(behavior: str) -> None:
    r = SceneRenderer(5, 320, 180)
    active = make_period(behavior)
    frames = [r.render(t, active) for t in (0.0, 0.2, 0.45, 0.7)]
    assert max(diff(frames[0], f) for f in frames[1:]) > 0.05  # the cue moves
    quiet = r.render(0.0, make_period())
    assert diff(frames[0], quiet) > 0.5  # the cue (or the dog's new place) is visible


def test_frame_without_dog_differs_from_frame_with_dog() -> None:
    r = SceneRenderer(2, 320, 180)
    assert diff(r.render(0.0, make_period(present=False)), r.render(0.0, make_period())) > 0.5


@pytest.mark.parametrize("seed", range(6))
def test_timeline_properties(seed: int) -> None:
    tl = Timeline.scripted(seed, duration_s=120.0, still_fraction=0.5)
    assert tl.duration_s == pytest.approx(120.0)
    for b in BEHAVIORS:
        assert tl.time_with(b) > 0
    for p in tl.periods:
        if p.behaviors:
            assert 6.0 - 1e-6 <= p.duration_s <= 20.0 + 1e-6
            assert p.dog_present and not p.sleeping
    still = sum(p.duration_s for p in tl.periods if p.still) / tl.duration_s
    assert 0.3 < still < 0.7
    assert tl.state_at(5.0) == tl.state_at(125.0)
    assert tl.labels_at(5.0) == tl.state_at(5.0).behaviors
    assert Timeline.scripted(seed) == Timeline.scripted(seed)


def test_timeline_mostly_still() -> None:
    tl = Timeline.scripted(1, duration_s=300.0, still_fraction=0.85)
    still = sum(p.duration_s for p in tl.periods if p.still) / tl.duration_s
    assert 0.75 < still < 0.92
    assert all(tl.time_with(b) > 0 for b in BEHAVIORS)


@pytest.mark.parametrize("seed", range(1, 7))
def test_timeline_without_every_behavior_keeps_the_still_fraction(seed: int) -> None:
    forced = Timeline.scripted(seed, duration_s=120.0, still_fraction=0.85)
    free = Timeline.scripted(seed, duration_s=120.0, still_fraction=0.85, every_behavior=False)

    def still(tl: Timeline) -> float:
        return sum(p.duration_s for p in tl.periods if p.still) / tl.duration_s

    assert 0.83 <= still(free) <= 0.87  # what the motion benchmark relies on
    assert any(p.behaviors for p in free.periods)
    assert still(forced) < still(free)  # forcing all three behaviors into 2 minutes eats into the stillness


def test_camera_like_encoding_is_capped_noisy_and_decodes() -> None:
    import av

    from simulators.video import CAMERA_LIKE, CHEAP, synthetic_units

    def encode(profile) -> list:  # noqa: ANN001
        return list(synthetic_units(3, width=320, height=180, fps=15, gop=15, duration_s=2.0, profile=profile))

    cheap, camera = encode(CHEAP), encode(CAMERA_LIKE)
    assert len(cheap) == len(camera) == 30
    kbit_s = sum(len(u.data) for u in camera) * 8 / 2.0 / 1000
    assert kbit_s <= 1.5 * CAMERA_LIKE.bitrate / 1000  # the VBV cap holds (2 s: the keyframes weigh in)
    # sensor noise leaves residual in every P-frame: they cost far more than the clean cartoon's
    p_cheap = np.mean([len(u.data) for u in cheap if not u.key])
    p_camera = np.mean([len(u.data) for u in camera if not u.key])
    assert p_camera > 3 * p_cheap
    ctx = av.CodecContext.create("h264", "r")
    frames = [f for u in camera for p in ctx.parse(u.data) for f in ctx.decode(p)]
    frames += [f for p in ctx.parse(None) for f in ctx.decode(p)] + list(ctx.decode(None))
    assert len(frames) == 30 and (frames[0].width, frames[0].height) == (320, 180)


def test_period_validation() -> None:
    with pytest.raises(ValueError, match="end_s"):
        Period(3.0, 1.0, frozenset())
    with pytest.raises(ValueError, match="unknown"):
        Period(0.0, 1.0, frozenset({"flying"}))
    with pytest.raises(ValueError, match="sleeping"):
        Period(0.0, 1.0, frozenset({"barking"}), sleeping=True)
