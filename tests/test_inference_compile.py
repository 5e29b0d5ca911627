"""Compile -> save -> load round trip on the tiny model, and refusal of tampered or mismatched artifacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.compile import ArtifactMismatch, compile_artifacts
from inference.engine import load_engine
from inference.types import DEFAULT_QUESTIONS, Question, VQARequest


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("art")
    compile_artifacts("tiny", backend="cpu", batch_sizes=(1, 2, 4), dtype="fp32", out=out, progress=lambda s: None)
    return out


def requests(n: int) -> list[VQARequest]:
    rng = np.random.default_rng(7)
    other = (Question("cat", "is there a cat?"),)
    return [
        VQARequest(i, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), other if i == 1 else DEFAULT_QUESTIONS)
        for i in range(n)
    ]


def test_manifest_lists_every_stage_with_checksums(artifacts):
    manifest = json.loads((artifacts / "manifest.json").read_text())
    assert manifest["backend"] == "cpu" and manifest["dtype"] == "fp32" and manifest["model"] == "tiny"
    assert {"torch", "transformers"} <= set(manifest["versions"])
    stages = {(a["stage"], a["batch_size"]) for a in manifest["artifacts"]}
    assert {("vision", 1), ("vision", 2), ("vision", 4), ("text", 4), ("decoder", 4)} <= stages
    for a in manifest["artifacts"]:
        assert (artifacts / a["file"]).is_file() and len(a["sha256"]) == 64


def test_round_trip_equals_eager_and_drops_padding(artifacts):
    eager = load_engine("tiny", dtype="fp32")
    compiled = load_engine("tiny", artifacts=str(artifacts))
    reqs = requests(3)  # 3 frames run in the batch-4 bucket
    got, want = compiled.run(reqs), eager.run(reqs)
    assert len(got) == 3 and [r.key for r in got] == [0, 1, 2]
    assert got[0].timings.padded_batch_size == 4 and got[0].timings.batch_size == 3
    for g, w in zip(got, want, strict=True):
        assert g.p_yes.keys() == w.p_yes.keys()
        for name in g.p_yes:
            assert abs(g.p_yes[name] - w.p_yes[name]) <= 1e-5
    assert compiled.runners["vision"].calls["compiled"] == 1
    assert compiled.runners["text"].calls["compiled"] == 1  # the default questions, padded, in one call
    assert compiled.runners["text"].calls["eager"] == 1  # the unseen question-set shape falls back to eager
    assert compiled.runners["decoder"].calls == {"compiled": 1, "eager": 1}


def copy(artifacts: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "art"
    shutil.copytree(artifacts, dst)
    return dst


def edit_manifest(directory: Path, **changes) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        if key.startswith("versions."):
            manifest["versions"][key.split(".", 1)[1]] = value
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest))


def test_tampered_artifact_refused(artifacts, tmp_path):
    art = copy(artifacts, tmp_path)
    target = art / "vision_b2.pt"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactMismatch, match="vision_b2.pt: sha256 differs"):
        load_engine("tiny", artifacts=str(art))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backend": "neuron"}, "backend: artifacts have 'neuron', engine has 'cpu'"),
        ({"model": "blip-base-random", "model_fingerprint": "0123"}, "model_fingerprint: artifacts have '0123'"),
        ({"versions.torch": "1.0.0"}, "versions.torch: artifacts need 1.0.0, installed"),
    ],
)
def test_mismatched_manifest_refused(artifacts, tmp_path, change, message):
    art = copy(artifacts, tmp_path)
    edit_manifest(art, **change)
    with pytest.raises(ArtifactMismatch, match=message.replace(".", r"\.")):
        load_engine("tiny", artifacts=str(art))


def test_other_dtype_refused(artifacts):
    with pytest.raises(ArtifactMismatch, match="dtype: artifacts have 'fp32', engine has 'bf16'"):
        load_engine("tiny", dtype="bf16", artifacts=str(artifacts))


def test_missing_manifest_refused(tmp_path):
    with pytest.raises(ArtifactMismatch, match="has no manifest.json"):
        load_engine("tiny", artifacts=str(tmp_path))
