"""The openvino backend on the tiny model: compile -> IR + manifest -> load, refusals, calibrated int8, serving.

Skips without openvino unless FAIL_WITHOUT_OPENVINO=1 (the Makefile installs `.[openvino]` and sets it)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from factories import encode_annexb, moving_square_frames, running_server
from test_inference_backends import require

from inference.calibration import CalibrationSet
from inference.compile import ArtifactMismatch, compile_artifacts
from inference.engine import load_engine
from inference.types import DEFAULT_QUESTIONS, Question, VQARequest
from simulators.calibration import scene_frames


@pytest.fixture(autouse=True)
def _openvino() -> None:
    require("openvino", "FAIL_WITHOUT_OPENVINO")


@pytest.fixture(scope="module")
def ov_fp32(tmp_path_factory) -> Path:
    require("openvino", "FAIL_WITHOUT_OPENVINO")
    out = tmp_path_factory.mktemp("ov-fp32")
    compile_artifacts("tiny", backend="openvino", batch_sizes=(1, 4), dtype="fp32", out=out, progress=lambda s: None)
    return out


@pytest.fixture(scope="module")
def calibration() -> CalibrationSet:
    return CalibrationSet(scene_frames(6, seed=11, size=64), "test scenes through H.264", 11)


def requests(n: int, seed: int = 7) -> list[VQARequest]:
    rng = np.random.default_rng(seed)
    other = (Question("cat", "is there a cat?"),)
    return [
        VQARequest(i, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), other if i == 1 else DEFAULT_QUESTIONS)
        for i in range(n)
    ]


def max_diff(a, b) -> float:
    return max(abs(x.p_yes[k] - y.p_yes[k]) for x, y in zip(a, b, strict=True) for k in x.p_yes)


def test_manifest_lists_ir_files_with_their_weights(ov_fp32):
    manifest = json.loads((ov_fp32 / "manifest.json").read_text())
    assert manifest["backend"] == "openvino" and "openvino" in manifest["versions"]
    assert manifest["calibration"] is None
    for a in manifest["artifacts"]:
        assert a["file"].endswith(".xml") and (ov_fp32 / a["file"]).is_file()
        assert [s["file"] for s in a["sidecars"]] == [a["file"].replace(".xml", ".bin")]
    shapes = {a["file"]: a["inputs"][0]["shape"] for a in manifest["artifacts"]}
    assert shapes["vision_b4.xml"] == [-1, 3, 64, 64]  # keyed without the batch dim, like TorchScript ones


def test_round_trip_equals_eager_fp32_and_drops_padding(ov_fp32):
    eager = load_engine("tiny", dtype="fp32")
    compiled = load_engine("tiny", backend="openvino", artifacts=str(ov_fp32))
    assert compiled.dtype == "fp32" and compiled.batch_sizes == (1, 4)
    reqs = requests(3)  # 3 frames in the batch-4 bucket, one of them with another question set
    got = compiled.run(reqs)
    assert [r.key for r in got] == [0, 1, 2] and got[0].timings.padded_batch_size == 4
    assert max_diff(got, eager.run(reqs)) <= 1e-5
    assert compiled.runners["vision"].calls == {"compiled": 1, "eager": 0}
    assert compiled.runners["text"].calls == {"compiled": 1, "eager": 1}  # the unseen question set runs eagerly


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "art"
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("name", ["vision_b1.bin", "text_b4_q3_l8.xml"])
def test_tampered_ir_refused(ov_fp32, tmp_path, name):
    art = _copy(ov_fp32, tmp_path)
    data = bytearray((art / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (art / name).write_bytes(bytes(data))
    with pytest.raises(ArtifactMismatch, match=f"{name.replace('.', '[.]')}: sha256 differs"):
        load_engine("tiny", backend="openvino", artifacts=str(art))


def test_other_backend_precision_and_library_refused(ov_fp32, tmp_path):
    with pytest.raises(ArtifactMismatch, match="backend: artifacts have 'openvino', engine has 'cpu'"):
        load_engine("tiny", backend="cpu", artifacts=str(ov_fp32))
    with pytest.raises(ArtifactMismatch, match="dtype: artifacts have 'fp32', engine has 'bf16'"):
        load_engine("tiny", backend="openvino", dtype="bf16", artifacts=str(ov_fp32))
    art = _copy(ov_fp32, tmp_path)
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["versions"]["openvino"] = "2020.1.0"
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactMismatch, match=r"versions\.openvino: artifacts need 2020\.1\.0, installed"):
        load_engine("tiny", backend="openvino", artifacts=str(art))


def test_int8_is_calibrated_on_the_given_frames_and_recorded(calibration, tmp_path):
    import openvino as ov

    manifest = compile_artifacts(
        "tiny",
        backend="openvino",
        batch_sizes=(1, 2),
        dtype="int8",
        out=tmp_path,
        calibration=calibration,
        progress=lambda s: None,
    )
    cal = manifest["calibration"]
    assert cal["frames"] == 6 and cal["seed"] == 11 and cal["sha256"] == calibration.sha256
    assert cal["stages"] == {"vision": 6, "text": 6}
    for name in ("vision_b2.xml", "text_b1_q3_l8.xml"):  # both stages really carry int8 quantization
        ops = [op.get_type_name() for op in ov.Core().read_model(str(tmp_path / name)).get_ops()]
        assert ops.count("FakeQuantize") >= 8, name
    ops = [op.get_type_name() for op in ov.Core().read_model(str(tmp_path / "decoder_b1_q3_l8.xml")).get_ops()]
    assert "FakeQuantize" not in ops  # the decoder stays float (bf16 hint)
    int8 = load_engine("tiny", backend="openvino", artifacts=str(tmp_path))
    reqs = [VQARequest(i, f, DEFAULT_QUESTIONS) for i, f in enumerate(scene_frames(2, seed=12, size=64))]
    got, want = int8.run(reqs), load_engine("tiny", dtype="fp32").run(reqs)
    assert 0 < max_diff(got, want) < 0.2  # quantized, so not exact; tiny's random weights are sensitive


def test_server_on_openvino_artifacts_gives_the_eager_frame_scores(ov_fp32):
    from simulators.camera import run_camera
    from simulators.video import EncodedUnit
    from streaming.batcher import BatchPolicy

    units = [EncodedUnit(d, p, k) for d, p, k in encode_annexb(moving_square_frames(30, seed=4))]

    def scores(address: str) -> dict[int, dict[str, float]]:
        report = asyncio.run(run_camera(address, "cam", iter(units), speed=0, want_scores=True, sample_fps=5))
        assert report.error is None and not report.warnings
        return {s.frame_seq: dict(s.p_yes) for s in report.scores}

    with running_server(load_engine("tiny", dtype="fp32")) as address:
        eager = scores(address)
    engine = load_engine("tiny", backend="openvino", artifacts=str(ov_fp32))
    with running_server(engine, batch=BatchPolicy(max_batch=4)) as address:
        compiled = scores(address)
    assert eager.keys() == compiled.keys() and len(eager) == 10
    diff = max(abs(eager[k][q] - compiled[k][q]) for k in eager for q in eager[k])
    assert diff <= 1e-5, diff  # stated tolerance for fp32 artifacts
    assert engine.runners["vision"].calls["compiled"] >= 1 and engine.runners["vision"].calls["eager"] == 0
