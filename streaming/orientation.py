"""Picture orientation: a camera's mounting or a video's display matrix as a quarter turn and a mirror."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ROTATIONS = (0, 90, 180, 270)


@dataclass(frozen=True)
class Orientation:
    """Turn the picture clockwise by `rotate` degrees, then mirror it left-right if `flip`.

    Every combination of quarter turns and mirrors is exactly one of these eight values."""

    rotate: int = 0  # degrees clockwise: 0, 90, 180 or 270
    flip: bool = False  # mirror left-right, after turning

    def __post_init__(self) -> None:
        if self.rotate not in ROTATIONS:
            raise ValueError(f"rotate: {self.rotate!r} is not one of {list(ROTATIONS)} (degrees clockwise)")

    @property
    def is_identity(self) -> bool:
        return self.rotate == 0 and not self.flip

    @property
    def swaps_axes(self) -> bool:
        """A quarter turn: a W x H picture comes out H x W."""
        return self.rotate in (90, 270)

    def then(self, other: Orientation) -> Orientation:
        """This orientation followed by `other`, as one."""
        # Mirroring and then turning clockwise by r is the same as turning counterclockwise by r and then mirroring.
        turn = -other.rotate if self.flip else other.rotate
        return Orientation((self.rotate + turn) % 360, self.flip != other.flip)

    def source_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) to scale a picture to before orienting it, so that it ends up width x height."""
        return (height, width) if self.swaps_axes else (width, height)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Orient an image array (rows first: H x W or H x W x C); returns a contiguous array."""
        if self.is_identity:
            return image
        out = np.rot90(image, k=-(self.rotate // 90)) if self.rotate else image  # rot90 turns counterclockwise
        if self.flip:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def __str__(self) -> str:
        return f"rotate {self.rotate}" + (" + flip" if self.flip else "")


IDENTITY = Orientation()


def from_display_matrix(matrix: Sequence[int] | np.ndarray) -> Orientation:
    """What FFmpeg's players do with a display matrix (AV_FRAME_DATA_DISPLAYMATRIX, MP4 'tkhd', H.264/HEVC display
    orientation SEI): the same decisions as the autorotate of fftools (ffmpeg_filter.c), rounded to quarter turns.

    `matrix` is the 3x3 matrix of int32 values (16.16 fixed point for the first two columns), row by row."""
    if len(matrix) != 9:
        raise ValueError(f"a display matrix has 9 values, got {len(matrix)}")
    m = [int(v) for v in matrix]
    s0, s1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if s0 == 0 or s1 == 0:
        return IDENTITY  # degenerate: no rotation can be read from it
    # av_display_rotation_get() is counterclockwise; players turn the picture clockwise by its negation.
    theta = round(math.degrees(math.atan2(m[1] / s1, m[0] / s0)))
    quarter = round(theta / 90) % 4 * 90
    if quarter == 90:  # transpose=cclock_flip (a transpose) or transpose=clock
        return Orientation(90, True) if m[3] > 0 else Orientation(90, False)
    if quarter == 270:  # transpose=clock_flip or transpose=cclock
        return Orientation(270, True) if m[3] < 0 else Orientation(270, False)
    if quarter == 180:  # hflip if m[0] < 0, vflip if m[4] < 0 (both: a half turn)
        hflip, vflip = m[0] < 0, m[4] < 0
        return Orientation(180 if vflip else 0, hflip != vflip)
    return Orientation(180, True) if m[4] < 0 else IDENTITY  # a vflip alone is a half turn and a mirror


def of_frame(frame: Any, *, full: bool = False) -> Orientation | None:
    """The display orientation FFmpeg attached to a decoded PyAV frame (from the container, an orientation SEI or
    a JPEG's EXIF); None when it has none.

    Reading PyAV's side data ties the frame into a reference cycle (frame <-> side data): the picture then waits
    for the garbage collector instead of going back to the decoder's buffer pool, which made decoding much slower.
    So unless `full`, the matrix is read only where `frame.rotation` (cheap) says it turns the picture: missed is
    the one orientation of eight whose rotation reads 0, a vertical flip (a half turn and a mirror)."""
    rotation = frame.rotation  # av_display_rotation_get(): degrees counterclockwise, 0 without a matrix
    if not rotation and not full:
        return None
    try:
        matrix = frame.side_data.get("DISPLAYMATRIX")
    except ValueError:  # PyAV cannot list side data of a type it does not know (FFmpeg 8's EXIF): the turn alone
        return Orientation(round(-rotation / 90) % 4 * 90) if rotation else None
    if matrix is None:
        return None
    return from_display_matrix(np.frombuffer(bytes(matrix), dtype=np.int32))
