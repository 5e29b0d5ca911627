"""Synthetic cartoon scenes with known labels: one camera's animated room, and random training frames."""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass, replace
from typing import cast

import numpy as np

from simulators.dog import Color, DogLook, DogPose, draw_dog, extent, snout_tip
from simulators.room import (
    Room,
    apply_camera,
    draw_background,
    furniture_legs,
    hsv,
    light_gain,
    luma,
    random_room,
)
from simulators.timeline import BEHAVIORS, Period

__all__ = ["BEHAVIORS", "SceneRenderer", "Stance", "random_scene", "render_frame"]

_DOG_PALETTE = (  # (hue, sat, value) ranges of common coats; the last one is any colour
    ((0.05, 0.11), (0.4, 0.8), (0.35, 0.8)),  # brown / tan
    ((0.09, 0.14), (0.3, 0.7), (0.7, 1.0)),  # golden
    ((0.0, 1.0), (0.0, 0.1), (0.1, 0.3)),  # black
    ((0.0, 1.0), (0.0, 0.1), (0.85, 1.0)),  # white
    ((0.0, 1.0), (0.0, 0.12), (0.45, 0.7)),  # grey
    ((0.0, 1.0), (0.3, 0.6), (0.4, 0.9)),  # any colour (cartoon)
)


def random_dog_look(rng: np.random.Generator, height: int, width: int) -> DogLook:
    h, s, v = _DOG_PALETTE[int(rng.integers(len(_DOG_PALETTE)))]
    hue, sat, val = rng.uniform(*h), rng.uniform(*s), rng.uniform(*v)
    body = hsv(hue, sat, val)
    ears = hsv(hue + rng.uniform(-0.03, 0.03), sat, val * rng.uniform(0.5, 0.85))
    snout = hsv(hue, sat * rng.uniform(0.3, 1.0), min(1.0, val * rng.uniform(1.0, 1.4) + 0.1))
    patch = hsv(rng.uniform(), rng.uniform(0.0, 0.5), rng.uniform(0.1, 1.0)) if rng.random() < 0.3 else None
    scale = min(height * rng.uniform(0.4, 0.52), width * 0.27)
    return DogLook(body, ears, snout, patch, float(scale), int(rng.integers(2)), float(rng.uniform(0.25, 0.45)))


@dataclass(frozen=True)
class Stance:
    """Where the dog is during one period and how it shows its behaviors (before animation)."""

    behaviors: frozenset[str]
    present: bool
    x: float = 0.0
    ground_y: float = 0.0
    facing: int = 1
    lying: bool = False
    sleeping: bool = False
    jump: bool = False  # playing by jumping (else with a ball)
    head_dx: float = 0.0
    head_dy: float = 0.0
    ball_color: Color = (230, 40, 40)
    arc_color: Color = (20, 20, 20)
    max_lift: float = 0.55


def _ball_color(rng: np.random.Generator, room: Room, look: DogLook) -> Color:
    for _ in range(20):
        c = hsv(rng.uniform(), rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0))
        if min(_dist(c, room.floor), _dist(c, look.body)) > 120:
            return c
    return c


def _dist(a: Color, b: Color) -> float:
    return float(np.linalg.norm(np.subtract(a, b, dtype=np.float32)))


def plan_stance(
    rng: np.random.Generator,
    room: Room,
    look: DogLook,
    behaviors: frozenset[str],
    present: bool = True,
    sleeping: bool = False,
) -> Stance | None:
    """Place the dog for a period; None if the room has no space that keeps the labels unambiguous."""
    if not present:
        return Stance(frozenset(), False)
    s, w, h, fur = look.scale, room.width, room.height, room.furniture
    ball = _ball_color(rng, room, look)
    arc = (int(rng.integers(10, 50)),) * 3 if luma(room.wall) > 115 else (int(rng.integers(215, 250)),) * 3
    playing, chewing = "playing" in behaviors, "chewing_furniture" in behaviors
    jump = playing and not chewing and rng.random() < 0.5
    lying = sleeping or (not behaviors and rng.random() < 0.5)
    floor_lo = max(room.horizon + 0.12 * (h - room.horizon), 1.2 * s)
    if chewing:
        facing = 1 if fur.x0 + fur.x1 < w else -1  # furniture on the left -> dog on its right, facing left
        facing = -facing
        ground = fur.base_y + h * rng.uniform(0.01, 0.05)
        head_dx = float(rng.uniform(0.0, 0.1))
        if fur.kind == "sofa":
            edge = fur.x1 if facing < 0 else fur.x0
            tip_x = edge + facing * s * rng.uniform(0.3, 0.5)
            tip_y = fur.base_y - s * rng.uniform(0.2, 0.4)
        else:
            leg = furniture_legs(fur)[1 if facing < 0 else 0]
            tip_x = leg + facing * s * rng.uniform(-0.05, 0.05)
            tip_y = fur.base_y - fur.height * rng.uniform(0.3, 0.6)
        x = tip_x - facing * (0.95 + head_dx) * s
        probe = DogPose(x, ground, facing, head_dx=head_dx)
        _, ty = snout_tip(look, probe)
        st = Stance(
            behaviors,
            True,
            float(x),
            float(ground),
            facing,
            head_dx=head_dx,
            head_dy=float((tip_y - ty) / s),
            ball_color=ball,
            arc_color=arc,
        )
        x0, y0, x1, _ = extent(look, _pose(st, look, 0.0))
        if x0 < -0.08 * w or x1 > 1.08 * w or y0 < 0:
            return None
        return st
    for _ in range(40):
        facing = 1 if rng.random() < 0.5 else -1
        ground = rng.uniform(floor_lo, h * 0.97)
        x = rng.uniform(0.0, w)
        max_lift = min(0.6, (ground - 1.2 * s) / s)
        if jump and max_lift < 0.4:
            continue
        st = Stance(
            behaviors,
            True,
            float(x),
            float(ground),
            facing,
            lying=lying,
            sleeping=sleeping,
            jump=jump,
            ball_color=ball,
            arc_color=arc,
            max_lift=float(max_lift),
        )
        x0, y0, x1, _ = extent(look, _pose(st, look, 0.0, lift=max_lift if jump else 0.0))
        margin = 0.1 * s
        clear = x1 < fur.x0 - margin or x0 > fur.x1 + margin
        if clear and x0 > -0.08 * w and x1 < w and y0 >= 0:
            return st
    return None


def _pose(st: Stance, look: DogLook, t: float, lift: float | None = None) -> DogPose:
    """The stance animated at time t; a stance without behaviors does not move."""
    pose = DogPose(
        st.x,
        st.ground_y,
        st.facing,
        lying=st.lying,
        eyes_closed=st.sleeping,
        head_dx=st.head_dx,
        head_dy=st.head_dy,
        ball_color=st.ball_color,
        arc_color=st.arc_color,
    )
    b = st.behaviors
    if not b:
        return pose
    tau = 2 * math.pi
    changes: dict[str, object] = {"tail_angle": 45.0 + 25.0 * math.sin(tau * 2.0 * t)}
    if "barking" in b:
        changes["mouth"] = 0.45 + 0.55 * abs(math.sin(tau * 1.25 * t))
        changes["arcs"] = (t * 1.7) % 1.0
    if "playing" in b:
        changes["leg_phase"] = tau * 1.5 * t
        if st.jump:
            changes["lift"] = lift if lift is not None else st.max_lift * (0.65 + 0.35 * abs(math.sin(tau * 0.6 * t)))
        else:
            pos = 0.12 + 0.2 * (0.5 + 0.5 * math.sin(tau * 0.4 * t))
            changes["ball_dx"] = pos
            changes["ball_spin"] = pos / 0.22
    if "chewing_furniture" in b:
        changes["x"] = st.x + 0.04 * look.scale * math.sin(tau * 0.9 * t)
        changes["head_dy"] = st.head_dy + 0.04 * math.sin(tau * 2.3 * t)
    return replace(pose, **changes)  # type: ignore[arg-type]


def render_frame(
    background: np.ndarray,
    room: Room,
    look: DogLook,
    stance: Stance,
    t: float,
    gain: np.ndarray,
    noise: np.ndarray | None,
) -> np.ndarray:
    img = background.copy()
    if stance.present:
        draw_dog(img, look, _pose(stance, look, t))
    return apply_camera(img, room, gain, noise)


def _random_setup(rng: np.random.Generator, width: int, height: int) -> tuple[Room, DogLook]:
    look = random_dog_look(rng, height, width)
    room = random_room(rng, width, height, look.scale, luma(look.body))
    return room, look


def random_labels(rng: np.random.Generator) -> tuple[frozenset[str], bool, bool]:
    """(behaviors, dog present, sleeping) for a training frame: about 15 % without a dog."""
    if rng.random() < 0.15:
        return frozenset(), False, False
    names = frozenset(b for b in BEHAVIORS if rng.random() < 0.4)
    return names, True, (not names and rng.random() < 0.35)


def random_scene(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, frozenset[str]]:
    """A fully randomised frame (HxWx3 uint8 RGB) and the behaviors it shows."""
    behaviors, present, sleeping = random_labels(rng)
    while True:
        room, look = _random_setup(rng, width, height)
        stance = plan_stance(rng, room, look, behaviors, present, sleeping)
        if stance is not None:
            break
    noise = rng.normal(0.0, room.noise, (height, width, 1)).astype(np.float32) if room.noise > 0.5 else None
    img = render_frame(draw_background(room), room, look, stance, float(rng.uniform(0, 100)), light_gain(room), noise)
    return img, behaviors


_COMBOS = [()] + [c for n in (1, 2, 3) for c in itertools.combinations(BEHAVIORS, n)]


class SceneRenderer:
    """One synthetic camera's scene: room, furniture and dog fixed by the seed, animated by a timeline."""

    def __init__(self, seed: int, width: int = 640, height: int = 360) -> None:
        if width < 32 or height < 32:
            raise ValueError(f"SceneRenderer: width and height must be >= 32, got {width}x{height}")
        self.seed, self.width, self.height = seed, width, height
        rng = np.random.default_rng([seed, 0x5CE4E])
        while True:  # a room where every behavior (and quiet) finds a place
            self.room, self.look = _random_setup(rng, width, height)
            if all(
                plan_stance(np.random.default_rng([seed, k]), self.room, self.look, frozenset(b)) is not None
                for k, b in enumerate(_COMBOS)
            ):
                break
        if self.look.patch is not None:
            # a camera's dog wears its spot in a darker shade of its coat: a bright spot of another hue reads
            # as a ball at 64 px (sim-tiny answers "playing" to it), and a camera shows one look for hours
            self.look = replace(self.look, patch=cast(Color, tuple(int(c * 0.6) for c in self.look.body)))
        self._background = draw_background(self.room)
        self._gain = light_gain(self.room)
        # a fixed noise pattern: still scenes stay bit-identical from frame to frame
        sigma = min(self.room.noise, 3.0)
        self._noise = rng.normal(0.0, sigma, (height, width, 1)).astype(np.float32) if sigma > 0.5 else None
        self._stances: dict[tuple[float, frozenset[str], bool, bool], Stance] = {}

    def stance_for(self, period: Period) -> Stance:
        """Where the dog is during `period` (deterministic per camera seed and period)."""
        key = (round(period.start_s, 3), period.behaviors, period.dog_present, period.sleeping)
        if key not in self._stances:
            tag = zlib.crc32(repr(key).encode())
            stance = None
            for attempt in range(20):
                rng = np.random.default_rng([self.seed, tag, attempt])
                stance = plan_stance(rng, self.room, self.look, period.behaviors, period.dog_present, period.sleeping)
                if stance is not None:
                    break
            if stance is None:  # the room is too tight for this combination: show the dog without ambiguity risk
                stance = Stance(frozenset(), False)
            self._stances[key] = stance
        return self._stances[key]

    def render(self, t: float, period: Period) -> np.ndarray:
        """The frame at t seconds during `period`: HxWx3 uint8 RGB, still when nothing happens."""
        return render_frame(self._background, self.room, self.look, self.stance_for(period), t, self._gain, self._noise)
