"""The cartoon dog: its look, its pose and the behavior cues drawn with it (sound arcs, ball, jump shadow)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel positions keep slow motion smooth
_ONE = 1 << _SHIFT

Color = tuple[int, int, int]


def _p(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def ellipse(
    img: np.ndarray,
    cx: float,
    cy: float,
    ax: float,
    ay: float,
    color: Color,
    angle: float = 0.0,
    start: float = 0.0,
    end: float = 360.0,
    thickness: int = -1,
) -> None:
    """Anti-aliased filled (or outlined) ellipse at sub-pixel position."""
    cv2.ellipse(
        img,
        _p(cx, cy),
        _p(max(ax, 0.5), max(ay, 0.5)),
        angle,
        start,
        end,
        color,
        thickness,
        cv2.LINE_AA,
        _SHIFT,
    )


def polygon(img: np.ndarray, pts: list[tuple[float, float]], color: Color) -> None:
    """Anti-aliased filled polygon."""
    arr = np.array([_p(x, y) for x, y in pts], dtype=np.int32)
    cv2.fillPoly(img, [arr], color, cv2.LINE_AA, _SHIFT)


def line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, color: Color, width: float) -> None:
    """Anti-aliased thick line with round caps."""
    cv2.line(img, _p(x0, y0), _p(x1, y1), color, max(1, int(round(width))), cv2.LINE_AA, _SHIFT)
    r = width / 2
    ellipse(img, x0, y0, r, r, color)
    ellipse(img, x1, y1, r, r, color)


@dataclass(frozen=True)
class DogLook:
    """What one dog looks like (fixed per camera)."""

    body: Color
    ears: Color
    snout: Color
    patch: Color | None  # optional spot on the body
    scale: float  # body length in pixels
    ear_style: int  # 0 floppy, 1 pointy
    tail_len: float  # in body lengths


@dataclass(frozen=True)
class DogPose:
    """Where the dog is and what it is doing in one frame."""

    x: float  # body centre, pixels
    ground_y: float  # floor line under the paws, pixels
    facing: int  # +1 looks right, -1 looks left
    mouth: float = 0.0  # 0 closed .. 1 wide open
    lying: bool = False
    eyes_closed: bool = False
    lift: float = 0.0  # jump height in body lengths (0 on the floor)
    head_dx: float = 0.0  # head offset in body lengths (forward +)
    head_dy: float = 0.0  # head offset in body lengths (down +)
    tail_angle: float = 50.0  # degrees above horizontal
    leg_phase: float = 0.0  # radians, for stretched legs while jumping / pawing
    arcs: float = -1.0  # barking arcs phase in [0, 1); < 0 draws none
    ball_dx: float = -1.0  # ball offset in front of the front paws, body lengths; < 0 draws no ball
    ball_spin: float = 0.0  # radians
    ball_color: Color = (230, 40, 40)
    arc_color: Color = (20, 20, 20)


def head_center(look: DogLook, pose: DogPose) -> tuple[float, float]:
    s, f = look.scale, pose.facing
    by = _body_cy(look, pose)
    if pose.lying:
        return pose.x + f * (0.55 + pose.head_dx) * s, by - 0.08 * s + pose.head_dy * s
    return pose.x + f * (0.55 + pose.head_dx) * s, by - 0.25 * s + pose.head_dy * s


def snout_tip(look: DogLook, pose: DogPose) -> tuple[float, float]:
    """Where the nose is: barking arcs start here, chewing puts it on the furniture."""
    hx, hy = head_center(look, pose)
    return hx + pose.facing * 0.4 * look.scale, hy + 0.06 * look.scale


def _body_cy(look: DogLook, pose: DogPose) -> float:
    s = look.scale
    if pose.lying:
        return pose.ground_y - 0.16 * s
    return pose.ground_y - (0.3 + 0.2 + pose.lift) * s


def extent(look: DogLook, pose: DogPose) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) of the dog and its cues, for keeping it clear of furniture."""
    s = look.scale
    hx, hy = head_center(look, pose)
    tx, _ = snout_tip(look, pose)
    xs = [
        pose.x - 0.5 * s - look.tail_len * s * 0.8,
        pose.x + 0.5 * s,
        hx - 0.22 * s,
        hx + 0.22 * s,
        tx + 0.05 * s,
    ]
    if pose.arcs >= 0:
        xs.append(tx + pose.facing * 0.75 * s)
    if pose.ball_dx >= 0:
        xs.append(pose.x + pose.facing * (0.5 + pose.ball_dx + 0.3) * s)
    y0 = min(hy - 0.45 * s, _body_cy(look, pose) - 0.4 * s)
    return min(xs), y0, max(xs), pose.ground_y + 0.05 * s


def draw_shadow(img: np.ndarray, look: DogLook, pose: DogPose) -> None:
    """Floor shadow under a jumping dog (the jump cue)."""
    s = look.scale
    shade = img.copy()
    ellipse(shade, pose.x + pose.facing * 0.1 * s, pose.ground_y, 0.6 * s, 0.11 * s, (0, 0, 0))
    cv2.addWeighted(shade, 0.7, img, 0.3, 0, dst=img)


def draw_dog(img: np.ndarray, look: DogLook, pose: DogPose) -> None:
    """Draw the dog (and its cues) into img in place."""
    s, f = look.scale, pose.facing
    if pose.lift > 0:
        draw_shadow(img, look, pose)
    by = _body_cy(look, pose)
    bx = pose.x
    dark = cast(Color, tuple(int(c * 0.7) for c in look.body))
    # tail
    ta = math.radians(pose.tail_angle)
    tl = look.tail_len * s
    tx0, ty0 = bx - f * 0.45 * s, by - 0.08 * s
    line(img, tx0, ty0, tx0 - f * tl * math.cos(ta), ty0 - tl * math.sin(ta), dark, 0.08 * s)
    # legs
    if not pose.lying:
        leg_w = 0.11 * s
        top = by + 0.1 * s
        for i, lx in enumerate((-0.32, -0.2, 0.22, 0.34)):
            x0 = bx + f * lx * s
            col = dark if i in (1, 3) else look.body
            if pose.lift > 0:
                swing = (0.18 if lx > 0 else -0.18) * s * (1 + 0.3 * math.sin(pose.leg_phase))
                line(img, x0, top, x0 + f * swing, top + 0.32 * s, col, leg_w)
            else:
                paw = 0.0
                if lx > 0 and pose.ball_dx >= 0 and i == 2:
                    paw = 0.06 * s * math.sin(pose.leg_phase)
                line(img, x0, top, x0 + f * paw, pose.ground_y - leg_w / 2, col, leg_w)
    else:
        for lx in (0.3, 0.42):  # front paws stretched forward on the floor
            ellipse(img, bx + f * lx * s, pose.ground_y - 0.04 * s, 0.12 * s, 0.05 * s, dark)
    # body
    ellipse(img, bx, by, 0.5 * s, (0.16 if pose.lying else 0.21) * s, look.body)
    if look.patch is not None:
        ellipse(img, bx - f * 0.1 * s, by - 0.05 * s, 0.16 * s, 0.1 * s, look.patch)
    # head
    hx, hy = head_center(look, pose)
    if not pose.lying:  # neck
        line(img, bx + f * 0.3 * s, by - 0.05 * s, hx, hy, look.body, 0.22 * s)
    ellipse(img, hx, hy, 0.2 * s, 0.19 * s, look.body)
    # snout: upper jaw, and a lower jaw hinged open when barking
    sx, sy = hx + f * 0.24 * s, hy + 0.06 * s
    if pose.mouth > 0:
        ang = 38.0 * pose.mouth
        ellipse(img, sx, sy + 0.02 * s, 0.15 * s, (0.07 + 0.06 * pose.mouth) * s, (60, 10, 20))
        polygon(img, _jaw(sx - f * 0.1 * s, sy + 0.03 * s, f, s, ang), (90, 20, 30))
        lower = _jaw(sx - f * 0.1 * s, sy + 0.03 * s, f, s, ang, thick=0.055)
        polygon(img, lower, look.snout)
    ellipse(img, sx, sy - (0.015 * s if pose.mouth > 0 else 0), 0.17 * s, 0.075 * s, look.snout)
    ellipse(img, sx + f * 0.15 * s, sy - 0.04 * s, 0.045 * s, 0.04 * s, (15, 15, 15))  # nose
    # ears
    if look.ear_style == 0:
        ellipse(img, hx - f * 0.08 * s, hy + 0.02 * s, 0.08 * s, 0.17 * s, look.ears, angle=f * 15.0)
    else:
        polygon(
            img,
            [
                (hx - f * 0.16 * s, hy - 0.1 * s),
                (hx - f * 0.02 * s, hy - 0.16 * s),
                (hx - f * 0.12 * s, hy - 0.4 * s),
            ],
            look.ears,
        )
    # eye
    ex, ey = hx + f * 0.07 * s, hy - 0.06 * s
    if pose.eyes_closed:
        line(img, ex - 0.04 * s, ey, ex + 0.04 * s, ey, (20, 20, 20), 0.025 * s)
    else:
        ellipse(img, ex, ey, 0.035 * s, 0.04 * s, (15, 15, 15))
    if pose.arcs >= 0:
        _draw_arcs(img, look, pose)
    if pose.ball_dx >= 0:
        _draw_ball(img, look, pose)


def _jaw(x: float, y: float, f: int, s: float, ang: float, thick: float = 0.09) -> list[tuple[float, float]]:
    """Lower jaw polygon rotated down by ang degrees around (x, y)."""
    a = math.radians(ang)
    pts = [(0.0, 0.0), (0.3, 0.0), (0.3, thick), (0.0, thick)]
    out = []
    for px, py in pts:
        rx = px * math.cos(a) - py * math.sin(a)
        ry = px * math.sin(a) + py * math.cos(a)
        out.append((x + f * rx * s, y + ry * s))
    return out


def _draw_arcs(img: np.ndarray, look: DogLook, pose: DogPose) -> None:
    """Sound arcs in front of the snout, pulsing outwards with the phase."""
    s, f = look.scale, pose.facing
    tx, ty = snout_tip(look, pose)
    width = max(1, int(round(0.075 * s)))
    start, end = (-40.0, 40.0) if f > 0 else (140.0, 220.0)
    for k in range(3):
        r = (0.16 + 0.2 * k + 0.12 * pose.arcs) * s
        ellipse(img, tx, ty, r, r * 1.15, pose.arc_color, start=start, end=end, thickness=width)


def _draw_ball(img: np.ndarray, look: DogLook, pose: DogPose) -> None:
    s, f = look.scale, pose.facing
    r = 0.22 * s
    cx = pose.x + f * (0.5 + pose.ball_dx) * s
    cy = pose.ground_y - r
    ellipse(img, cx, cy, r, r, pose.ball_color)
    stripe = cast(Color, tuple(255 - c // 3 for c in pose.ball_color))
    ang = math.degrees(pose.ball_spin)
    ellipse(img, cx, cy, r, r * 0.3, stripe, angle=ang)
