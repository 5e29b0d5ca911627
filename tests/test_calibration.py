"""Calibration sets: `petstream calibration` writes simulator scenes through H.264; inference reads them back."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from inference.calibration import DEFAULT_CALIBRATION, CalibrationSet, load_calibration


def test_cli_writes_a_set_that_inference_reads(tmp_path):
    out = tmp_path / "frames.npz"
    cmd = [sys.executable, "-m", "petstream.cli", "calibration", "--frames", "3", "--size", "64", "--seed", "5"]
    done = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cal = load_calibration(out)
    assert cal.frames.shape == (3, 64, 64, 3) and cal.seed == 5 and "H.264" in cal.source
    assert cal.frames.std() > 10  # real pictures, not a blank buffer
    described = cal.describe()
    assert described["frames"] == 3 and described["seed"] == 5 and len(described["sha256"]) == 64


def test_shipped_set_and_holdout():
    cal = load_calibration()
    assert DEFAULT_CALIBRATION.is_file() and len(cal) == 40 and cal.seed is not None
    kept, held = cal.split(4)
    assert len(kept) == 36 and len(held) == 4 and np.array_equal(held, cal.frames[36:])
    with pytest.raises(ValueError, match="keep at least one"):
        cal.split(40)


def test_bad_files_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="petstream calibration --out"):
        load_calibration(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, pictures=np.zeros(3))
    with pytest.raises(ValueError, match="not a petstream calibration"):
        load_calibration(bad)
    with pytest.raises(ValueError, match=r"\[N,H,W,3\] uint8"):
        CalibrationSet(np.zeros((2, 8, 8, 3), dtype=np.float32), "floats")
