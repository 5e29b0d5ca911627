"""Engine on the tiny model: mixed question sets, preprocessing, batch-bucket padding, dtype choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.engine import cpu_has_fast_bf16, load_engine, resolve_dtype
from inference.models import load_model
from inference.preprocess import to_pixel_values
from inference.reference import reference_p_yes
from inference.runner import StageRunner, pad_batch, signature
from inference.types import DEFAULT_QUESTIONS, Question, VQARequest

OTHER = (Question("cat", "is there a cat?"), Question("barking", "is the dog barking?"))


@pytest.fixture(scope="module")
def engine():
    return load_engine("tiny", dtype="fp32")


@pytest.fixture(scope="module")
def reference():
    return load_model("tiny")


def requests(n: int, size: int = 64, seed: int = 0) -> list[VQARequest]:
    rng = np.random.default_rng(seed)
    return [
        VQARequest(i, rng.integers(0, 256, (size, size, 3), dtype=np.uint8), DEFAULT_QUESTIONS if i % 2 else OTHER)
        for i in range(n)
    ]


def test_mixed_question_sets_match_reference(engine, reference):
    model, processor = reference
    reqs = requests(3)
    results = engine.run(reqs)
    assert [r.key for r in results] == [0, 1, 2]
    for req, res in zip(reqs, results, strict=True):
        assert set(res.p_yes) == {q.name for q in req.questions}
        for q in req.questions:
            assert abs(res.p_yes[q.name] - reference_p_yes(model, processor, req.image, q.text)) <= 1e-5
    t = results[0].timings
    assert t.batch_size == 3 and t.padded_batch_size == 3 and t.vision_s > 0 and t.text_s > 0


def test_more_requests_than_largest_batch_are_split():
    small = load_engine("tiny", dtype="fp32", batch_sizes=(1, 2))
    results = small.run(requests(5))
    assert [r.key for r in results] == list(range(5))
    assert {r.timings.batch_size for r in results} == {2, 1}


def test_preprocess_matches_processor(reference):
    _, processor = reference
    ip = processor.image_processor
    images = [r.image for r in requests(2)]
    want = ip(images, return_tensors="pt")["pixel_values"]
    got = to_pixel_values(images, 64, ip.image_mean, ip.image_std)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    big = np.zeros((48, 160, 3), dtype=np.uint8)
    assert to_pixel_values([big], 64, ip.image_mean, ip.image_std).shape == (1, 3, 64, 64)


def test_runner_pads_to_bucket_and_drops_padding():
    calls = []

    def compiled(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x * 2

    runner = StageRunner("decoder", lambda x: x + 100)
    x = torch.arange(3 * 4, dtype=torch.float32).view(3, 2, 2)
    runner.add(4, signature((x,), runner.layout), compiled)
    out, padded = runner(x)
    assert calls == [4] and padded == 4
    torch.testing.assert_close(out, x * 2)
    y = torch.zeros(5, 2, 2)  # no bucket fits 5 rows: eager
    out, padded = runner(y)
    assert padded == 5 and torch.equal(out, y + 100)
    assert runner.calls == {"compiled": 1, "eager": 1}


def test_pad_batch_repeats_first_row():
    x = torch.tensor([[1.0], [2.0]])
    assert pad_batch(x, 0, 4).flatten().tolist() == [1.0, 2.0, 1.0, 1.0]


def test_dtype_auto_follows_cpu_flags():
    assert cpu_has_fast_bf16("flags\t\t: fpu sse avx512f avx512_bf16\n")
    assert cpu_has_fast_bf16("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert not cpu_has_fast_bf16("flags\t\t: fpu sse avx2 avx512f\n")
    assert resolve_dtype("fp32", "cpu") == "fp32" and resolve_dtype("auto", "cuda") == "bf16"
    with pytest.raises(ValueError, match="dtype='fp16' is not one of auto, fp32, bf16"):
        resolve_dtype("fp16", "cpu")


def test_bf16_engine_close_to_fp32(engine):
    bf16 = load_engine("tiny", dtype="bf16")
    reqs = requests(2, seed=3)
    for a, b in zip(engine.run(reqs), bf16.run(reqs), strict=True):
        for name in a.p_yes:
            assert abs(a.p_yes[name] - b.p_yes[name]) < 0.05


def test_int8_vision_engine_close_to_fp32_and_compiled_equal(engine, tmp_path):
    """dtype int8: vision linears in dynamic int8, the rest bf16; traced artifacts give the eager numbers."""
    from inference.compile import compile_artifacts
    from inference.stages import Int8VisionStage

    int8 = load_engine("tiny", dtype="int8", batch_sizes=(1, 2))
    assert isinstance(int8.staged.vision, Int8VisionStage) and int8.host_dtype == torch.bfloat16
    reqs = requests(2, seed=3)
    eager = int8.run(reqs)
    for a, b in zip(engine.run(reqs), eager, strict=True):
        for name in a.p_yes:
            assert abs(a.p_yes[name] - b.p_yes[name]) < 0.05
    compile_artifacts("tiny", dtype="int8", batch_sizes=(2,), out=tmp_path, progress=lambda s: None)
    compiled = load_engine("tiny", artifacts=str(tmp_path))
    assert compiled.dtype == "int8"
    for a, b in zip(eager, compiled.run(reqs), strict=True):
        for name in a.p_yes:
            assert abs(a.p_yes[name] - b.p_yes[name]) < 1e-2
    assert compiled.runners["vision"].calls["compiled"] == 1
    with pytest.raises(ValueError, match="cpu and openvino backends only"):
        resolve_dtype("int8", "cuda")


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="backend='tpu' is not one of cpu, cuda, neuron"):
        load_engine("tiny", backend="tpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_sizes"):
        load_engine("tiny", batch_sizes=(0, 2))
