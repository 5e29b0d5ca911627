"""Calibration frames for static int8: a typed set of real RGB frames with its provenance, read from an .npz.

The frames are made outside this layer (simulators/calibration.py: the simulator's scenes through H.264, or
frames from a user's own cameras); the inference layer only reads them, and the manifest records what it used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: shipped with the package: `petstream calibration --out` of the simulator's scenes through H.264
DEFAULT_CALIBRATION = Path(__file__).parent / "assets" / "calibration" / "scenes-h264.npz"
REMAKE_HINT = "make one with `petstream calibration --out FILE.npz` (simulator scenes through H.264)"


@dataclass(frozen=True, repr=False)
class CalibrationSet:
    """N real frames (uint8 RGB [N,H,W,3]) and where they came from (source text, seed when generated)."""

    frames: np.ndarray
    source: str
    seed: int | None = None

    def __post_init__(self) -> None:
        f = self.frames
        if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8 or len(f) < 1:
            raise ValueError(f"CalibrationSet.frames must be [N,H,W,3] uint8 with N >= 1, got {f.shape} {f.dtype}")

    def __repr__(self) -> str:
        return f"CalibrationSet({len(self.frames)} frames {self.frames.shape[1:3]}, seed={self.seed}, {self.source!r})"

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.frames).tobytes()).hexdigest()

    def split(self, holdout: int) -> tuple[CalibrationSet, np.ndarray]:
        """(the set without its last `holdout` frames, those frames): checks never see calibration frames."""
        if not 0 <= holdout < len(self.frames):
            raise ValueError(f"holdout={holdout}: the set has {len(self.frames)} frames; keep at least one")
        keep = len(self.frames) - holdout
        return CalibrationSet(self.frames[:keep], self.source, self.seed), self.frames[keep:]

    def describe(self) -> dict[str, Any]:
        """What a manifest records: size, seed, source and a checksum of the frames."""
        return {
            "frames": len(self.frames),
            "frame_shape": list(self.frames.shape[1:]),
            "seed": self.seed,
            "source": self.source,
            "sha256": self.sha256,
        }


def save_calibration(path: str | Path, calibration: CalibrationSet) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = -1 if calibration.seed is None else calibration.seed
    np.savez_compressed(path, frames=calibration.frames, source=np.array(calibration.source), seed=np.array(seed))
    return path


def load_calibration(path: str | Path | None = None) -> CalibrationSet:
    """Read a calibration .npz (`frames`, `source`, `seed`); None reads the shipped default set."""
    path = Path(path) if path is not None else DEFAULT_CALIBRATION
    if not path.is_file():
        raise FileNotFoundError(f"calibration set {str(path)!r} does not exist; {REMAKE_HINT}")
    try:
        with np.load(path, allow_pickle=False) as data:
            frames = data["frames"]
            source = str(data["source"]) if "source" in data else str(path.name)
            seed = int(data["seed"]) if "seed" in data else -1
    except (KeyError, ValueError, OSError) as exc:
        raise ValueError(
            f"calibration set {str(path)!r} is not a petstream calibration .npz ({exc}); {REMAKE_HINT}"
        ) from exc
    return CalibrationSet(frames, source, None if seed < 0 else seed)
