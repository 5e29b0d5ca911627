"""The cartoon room: wall, floor, window, rug, one piece of furniture, and the camera's lighting and noise."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np

from simulators.dog import Color, ellipse, line, polygon


def hsv(h: float, s: float, v: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def luma(c: Color) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


@dataclass(frozen=True)
class Furniture:
    """A sofa or a table standing on the floor, spanning x0..x1 with its feet at base_y."""

    kind: str  # "sofa" | "table"
    x0: float
    x1: float
    base_y: float
    height: float  # sofa seat height / table top height, pixels
    back: float  # sofa back height above the seat (unused for tables)
    color: Color
    leg_w: float


@dataclass(frozen=True)
class Room:
    """Static look of one room (fixed per camera) and the camera's image effects."""

    width: int
    height: int
    wall: Color
    floor: Color
    horizon: float  # y of the wall/floor line
    window: tuple[float, float, float, float] | None  # x, y, w, h
    sky: Color
    rug: tuple[float, float, float, float, Color] | None  # cx, cy, ax, ay, colour
    furniture: Furniture
    light_angle: float
    light_strength: float
    tint: tuple[float, float, float]
    noise: float  # gaussian sigma, grey levels
    blur: float  # gaussian sigma in pixels, 0 for none


def draw_background(room: Room) -> np.ndarray:
    """Wall, floor, window, rug and furniture as an HxWx3 uint8 RGB image."""
    w, h = room.width, room.height
    img = np.empty((h, w, 3), np.uint8)
    hz = int(round(room.horizon))
    img[:hz] = room.wall
    img[hz:] = room.floor
    skirting = cast(Color, tuple(int(c * 0.8) for c in room.wall))
    img[max(hz - max(1, h // 90), 0) : hz] = skirting
    if room.window is not None:
        x, y, ww, wh = room.window
        frame = (235, 235, 228)
        polygon(img, [(x, y), (x + ww, y), (x + ww, y + wh), (x, y + wh)], frame)
        t = max(ww * 0.06, 1.5)
        polygon(
            img,
            [(x + t, y + t), (x + ww - t, y + t), (x + ww - t, y + wh - t), (x + t, y + wh - t)],
            room.sky,
        )
        line(img, x + ww / 2, y + t, x + ww / 2, y + wh - t, frame, t * 0.7)
        line(img, x + t, y + wh / 2, x + ww - t, y + wh / 2, frame, t * 0.7)
    if room.rug is not None:
        cx, cy, ax, ay, col = room.rug
        ellipse(img, cx, cy, ax, ay, col)
        ellipse(
            img,
            cx,
            cy,
            ax * 0.8,
            ay * 0.7,
            cast(Color, tuple(min(255, int(c * 1.15) + 10) for c in col)),
            thickness=2,
        )
    draw_furniture(img, room.furniture)
    return img


def draw_furniture(img: np.ndarray, f: Furniture) -> None:
    dark = cast(Color, tuple(int(c * 0.72) for c in f.color))
    light = cast(Color, tuple(min(255, int(c * 1.12) + 8) for c in f.color))
    if f.kind == "sofa":
        leg = f.height * 0.15
        seat_top = f.base_y - f.height
        back_top = seat_top - f.back
        arm = (f.x1 - f.x0) * 0.12
        for lx in (f.x0 + arm * 0.5, f.x1 - arm * 0.5):
            line(img, lx, f.base_y - leg, lx, f.base_y - leg * 0.3, (40, 30, 25), f.leg_w)
        polygon(
            img,
            [
                (f.x0 + arm * 0.5, back_top),
                (f.x1 - arm * 0.5, back_top),
                (f.x1 - arm * 0.5, seat_top),
                (f.x0 + arm * 0.5, seat_top),
            ],
            dark,
        )
        polygon(img, [(f.x0, seat_top), (f.x1, seat_top), (f.x1, f.base_y - leg), (f.x0, f.base_y - leg)], f.color)
        cush = (f.x1 - f.x0 - 2 * arm) / 2
        for i in range(2):
            cx0 = f.x0 + arm + i * cush
            polygon(
                img,
                [
                    (cx0 + 2, seat_top - f.height * 0.12),
                    (cx0 + cush - 2, seat_top - f.height * 0.12),
                    (cx0 + cush - 2, seat_top + f.height * 0.1),
                    (cx0 + 2, seat_top + f.height * 0.1),
                ],
                light,
            )
        for ax0 in (f.x0, f.x1 - arm):
            polygon(
                img,
                [
                    (ax0, seat_top - f.height * 0.35),
                    (ax0 + arm, seat_top - f.height * 0.35),
                    (ax0 + arm, f.base_y - leg),
                    (ax0, f.base_y - leg),
                ],
                dark,
            )
    else:
        top = f.base_y - f.height
        slab = max(f.height * 0.09, 2.0)
        inset = f.leg_w * 1.2
        for lx in (f.x0 + inset * 2.2, f.x1 - inset * 2.2):  # back legs, further away
            line(img, lx, top, lx, f.base_y - f.height * 0.12, dark, f.leg_w * 0.8)
        for lx in (f.x0 + inset, f.x1 - inset):
            line(img, lx, top, lx, f.base_y, f.color, f.leg_w)
        polygon(
            img,
            [(f.x0, top - slab), (f.x1, top - slab), (f.x1, top + slab * 0.3), (f.x0, top + slab * 0.3)],
            light,
        )


def furniture_legs(f: Furniture) -> tuple[float, float]:
    """x of the front legs a dog can chew (table) or the sofa's side edges."""
    if f.kind == "table":
        inset = f.leg_w * 1.2
        return f.x0 + inset, f.x1 - inset
    return f.x0, f.x1


def light_gain(room: Room) -> np.ndarray:
    """HxWx3 float32 multiplier: the lighting gradient and colour tint of the camera."""
    h, w = room.height, room.width
    ys = (np.arange(h, dtype=np.float32) / h - 0.5)[:, None]
    xs = (np.arange(w, dtype=np.float32) / w - 0.5)[None, :]
    grad = 1.0 + 2.0 * room.light_strength * (np.cos(room.light_angle) * xs + np.sin(room.light_angle) * ys)
    return grad[:, :, None] * np.asarray(room.tint, np.float32)[None, None, :]


def apply_camera(img: np.ndarray, room: Room, gain: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
    """Lighting, tint, sensor noise and lens blur applied to a clean render."""
    out = img.astype(np.float32) * gain
    if noise is not None:
        out += noise
    if room.blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), room.blur)
    return np.clip(out, 0, 255).astype(np.uint8)


def random_room(rng: np.random.Generator, width: int, height: int, dog_scale: float, dog_luma: float) -> Room:
    """A random room whose colours keep a dog of luma `dog_luma` visible, with furniture sized to the dog."""
    for _ in range(50):
        wall = hsv(rng.uniform(), rng.uniform(0.05, 0.3), rng.uniform(0.4, 0.95))
        floor = hsv(rng.uniform(), rng.uniform(0.05, 0.35), rng.uniform(0.2, 0.8))
        fcol = hsv(rng.uniform(), rng.uniform(0.15, 0.45), rng.uniform(0.2, 0.85))
        if (
            abs(luma(wall) - dog_luma) > 35
            and abs(luma(floor) - dog_luma) > 40
            and abs(luma(fcol) - dog_luma) > 35
            and abs(luma(wall) - luma(floor)) > 20
        ):
            break
    horizon = height * rng.uniform(0.38, 0.55)
    window = None
    if rng.random() < 0.6:
        ww = width * rng.uniform(0.12, 0.25)
        wh = horizon * rng.uniform(0.35, 0.6)
        window = (rng.uniform(0.03, 0.97) * (width - ww), horizon * rng.uniform(0.08, 0.3), ww, wh)
    sky = hsv(rng.uniform(0.52, 0.62), rng.uniform(0.2, 0.6), rng.uniform(0.75, 1.0))
    rug = None
    if rng.random() < 0.5:
        col = hsv(rng.uniform(), rng.uniform(0.1, 0.4), rng.uniform(0.25, 0.85))
        rug = (
            width * rng.uniform(0.2, 0.8),
            (horizon + height) / 2 + height * rng.uniform(0.0, 0.2),
            width * rng.uniform(0.15, 0.3),
            height * rng.uniform(0.06, 0.12),
            col,
        )
    kind = "sofa" if rng.random() < 0.5 else "table"
    s = dog_scale
    fw = min(s * rng.uniform(1.3, 2.0) if kind == "sofa" else s * rng.uniform(1.1, 1.7), width * 0.36)
    left = rng.random() < 0.5
    margin = width * rng.uniform(0.0, 0.06)
    x0 = margin if left else width - margin - fw
    base = horizon + (height - horizon) * rng.uniform(0.25, 0.5)
    fh = s * (rng.uniform(0.45, 0.6) if kind == "sofa" else rng.uniform(0.8, 1.05))
    furniture = Furniture(
        kind,
        float(x0),
        float(x0 + fw),
        float(base),
        float(fh),
        float(s * rng.uniform(0.3, 0.45)),
        fcol,
        float(max(s * rng.uniform(0.07, 0.1), 2.0)),
    )
    return Room(
        width=width,
        height=height,
        wall=wall,
        floor=floor,
        horizon=float(horizon),
        window=window,
        sky=sky,
        rug=rug,
        furniture=furniture,
        light_angle=float(rng.uniform(0, 2 * np.pi)),
        light_strength=float(rng.uniform(0, 0.3)),
        tint=tuple(float(v) for v in rng.uniform(0.88, 1.12, 3)),  # type: ignore[arg-type]
        noise=float(rng.uniform(0, 7)),
        blur=float(width * rng.uniform(0.002, 0.008)) if rng.random() < 0.12 else 0.0,
    )
