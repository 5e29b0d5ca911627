"""The shipped sim-tiny model through H.264 and the real server: per-behavior accuracy on fresh scenes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from factories import running_server

from inference.engine import load_engine
from simulators.camera import run_camera
from simulators.scenes import random_scene
from simulators.timeline import BEHAVIORS
from simulators.video import EncodedUnit, FrameEncoder

FRAMES = 150
SEED = 20261130  # never used in training


@pytest.fixture(scope="module", params=["eager", "openvino-int8"])
def sim_tiny_engine(request, tmp_path_factory):
    if request.param == "eager":
        engine = load_engine("sim-tiny")
    else:  # compiled, saved and loaded: NNCF int8 calibrated on the shipped scene frames
        from test_inference_backends import require

        from inference.compile import compile_artifacts

        require("openvino", "FAIL_WITHOUT_OPENVINO")
        out = tmp_path_factory.mktemp("sim-tiny-ov-int8")
        compile_artifacts("sim-tiny", backend="openvino", dtype="int8", out=out, progress=lambda s: None)
        engine = load_engine("sim-tiny", backend="openvino", artifacts=str(out))
        assert engine.dtype == "int8"
    yield engine
    engine.close()


def test_sim_tiny_answers_fresh_h264_frames_through_the_server(sim_tiny_engine):
    rng = np.random.default_rng(SEED)
    encoder = FrameEncoder("h264", 640, 360, fps=15, gop=15)
    units, truth = [], {}
    for i in range(FRAMES):
        image, labels = random_scene(rng, 640, 360)
        pts = round(i * 1e6 / 15)
        truth[pts] = labels
        units += [EncodedUnit(d, p, k) for d, p, k in encoder.encode(image, pts)]
    units += [EncodedUnit(d, p, k) for d, p, k in encoder.flush()]

    with running_server(sim_tiny_engine) as address:
        report = asyncio.run(run_camera(address, "golden", iter(units), speed=0, want_scores=True, sample_fps=15))
    assert report.error is None and len(report.scores) == FRAMES
    accuracy = {}
    for behavior in BEHAVIORS:
        right = sum((s.p_yes[behavior] >= 0.5) == (behavior in truth[s.pts_us]) for s in report.scores)
        accuracy[behavior] = right / FRAMES
    positives = {b: sum(b in t for t in truth.values()) for b in BEHAVIORS}
    assert all(n >= 15 for n in positives.values()), positives  # each behavior really occurs in the sample
    assert all(a >= 0.95 for a in accuracy.values()), accuracy
