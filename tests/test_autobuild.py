"""Fast by default: settings ranked from CPU flags, built once, cached by fingerprint, gated on fidelity."""

from __future__ import annotations

import logging

import pytest

from inference import autobuild
from inference.autobuild import candidates, load_fast_engine

FLAGS_ZEN4 = "flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
FLAGS_OLD = "flags\t\t: fpu sse avx2\n"


def test_candidates_follow_the_cpu_features():
    assert [(c.backend, c.dtype) for c in candidates(cpuinfo=FLAGS_ZEN4, openvino=True)] == [
        ("openvino", "int8"),
        ("openvino", "bf16"),
        ("openvino", "fp32"),
    ]
    assert [(c.backend, c.dtype) for c in candidates(cpuinfo=FLAGS_ZEN4, openvino=False)][0] == ("cpu", "int8")
    only = candidates(cpuinfo=FLAGS_OLD, openvino=False)
    assert [(c.backend, c.dtype, c.gated) for c in only] == [("cpu", "fp32", False)]
    assert "no bf16/VNNI/AMX flags" in only[0].reason
    explicit = candidates("cpu", "bf16", cpuinfo=FLAGS_OLD)
    assert [(c.backend, c.dtype, c.gated) for c in explicit] == [("cpu", "bf16", False)]
    assert candidates("openvino", "auto", cpuinfo=FLAGS_ZEN4)[0].reason.startswith("--backend openvino")


def test_built_once_then_loaded_from_the_cache_and_rebuilt_when_tampered(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(autobuild, "MAX_P_YES_DIFF", 0.0)  # nothing quantized passes: falls through to fp32
    monkeypatch.setattr(autobuild, "cpu_has_fast_bf16", lambda cpuinfo=None: True)
    monkeypatch.setattr(autobuild, "cpu_has_int8_dot", lambda cpuinfo=None: True)
    engine, first = load_fast_engine("tiny", backend="cpu", batch_sizes=(1, 2), cache_dir=tmp_path)
    assert (first.backend, first.dtype, first.built) == ("cpu", "fp32", True)
    assert [r.split(" ")[0] for r in first.rejected] == ["cpu/int8", "cpu/bf16"]
    assert engine.runners["vision"].compiled and engine.batch_sizes == (1, 2)
    assert any("compiled stages built now" in line for line in first.log_lines())

    engine, second = load_fast_engine("tiny", backend="cpu", batch_sizes=(1, 2), cache_dir=tmp_path)
    assert (second.dtype, second.built, second.artifacts) == ("fp32", False, first.artifacts)
    assert len(second.rejected) == 2  # the verdicts are cached too: nothing rebuilt
    assert "loaded from the cache" in second.log_lines()[0]

    target = first.artifacts / "vision_b1.pt"
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")
    with caplog.at_level(logging.WARNING, logger="inference.autobuild"):
        engine, third = load_fast_engine("tiny", backend="cpu", batch_sizes=(1, 2), cache_dir=tmp_path)
    assert third.built and "vision_b1.pt: sha256 differs" in caplog.text
    assert len(engine.run(_requests())) == 2


def test_other_batch_sizes_get_their_own_entry(tmp_path):
    _, a = load_fast_engine("tiny", backend="cpu", dtype="fp32", batch_sizes=(1,), cache_dir=tmp_path)
    _, b = load_fast_engine("tiny", backend="cpu", dtype="fp32", batch_sizes=(1, 2), cache_dir=tmp_path)
    assert a.artifacts != b.artifacts and a.built and b.built and a.max_p_yes_diff is None  # explicit: not gated


def test_a_build_killed_part_way_leaves_nothing_behind_once_the_entry_is_built_again(tmp_path):
    import shutil

    _, first = load_fast_engine("tiny", backend="cpu", dtype="fp32", batch_sizes=(1,), cache_dir=tmp_path)
    shutil.rmtree(first.artifacts)  # as if never built ...
    stale = first.artifacts.parent / (first.artifacts.name + ".k1lled")  # ... by a build that was killed
    stale.mkdir()
    (stale / "vision_b1.pt").write_bytes(b"half written")
    _, again = load_fast_engine("tiny", backend="cpu", dtype="fp32", batch_sizes=(1,), cache_dir=tmp_path)
    assert again.built and again.artifacts == first.artifacts
    assert not stale.exists()
    assert sorted(p.name for p in first.artifacts.parent.iterdir()) == [
        first.artifacts.name,
        first.artifacts.name + ".lock",
    ]


def _requests() -> list:
    import numpy as np

    from inference.types import DEFAULT_QUESTIONS, VQARequest

    rng = np.random.default_rng(0)
    return [VQARequest(i, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), DEFAULT_QUESTIONS) for i in range(2)]


@pytest.mark.parametrize("flag", [[], ["--no-compile"]])
def test_serve_logs_what_it_chose_and_why(tmp_path, flag):
    from simulators.fleet import server_process

    log = tmp_path / "server.log"
    args = ["--model", "tiny", "--backend", "cpu", "--dtype", "fp32", "--cache-dir", str(tmp_path / "c"), *flag]
    for _ in range(2):
        with server_process(args, log_path=str(log), timeout_s=300):
            pass
        text = log.read_text()
    if flag:
        assert "inference: cpu/fp32, eager (--no-compile)" in text
    else:
        assert "inference: cpu/fp32 (TorchScript, fp32), compiled stages loaded from the cache" in text
        assert "why: asked for (--backend cpu, --dtype fp32)" in text
