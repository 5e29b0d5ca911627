"""Backend registry, the Neuron import guard, and the hardware runs (needs_cuda / needs_neuron)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from inference.backends import BackendUnavailable, get_backend
from inference.backends.neuron import compiler_args

NEURON = pytest.mark.needs_neuron
CUDA = pytest.mark.needs_cuda


def require(backend: str, env: str) -> None:
    """Skip when the hardware is missing, unless `env`=1 says this run must have it (then fail)."""
    try:
        get_backend(backend).check_available()
    except BackendUnavailable as exc:
        if os.environ.get(env) == "1":
            pytest.fail(f"{env}=1 but backend {backend!r} is unavailable: {exc}")
        pytest.skip(str(exc))


def test_registry_names_and_errors():
    assert get_backend("cpu").name == "cpu"
    with pytest.raises(ValueError, match="backend='tpu' is not one of cpu, cuda, neuron"):
        get_backend("tpu")


def test_neuron_guard_explains_how_to_install():
    try:
        import torch_neuronx  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("torch_neuronx is installed here")
    with pytest.raises(BackendUnavailable) as info:
        get_backend("neuron").check_available()
    msg = str(info.value)
    assert "WRONG PACKAGE" in msg and "pip.repos.neuron.amazonaws.com" in msg and "torch-neuronx" in msg


def test_neuron_compiler_args_set_auto_cast_explicitly():
    assert compiler_args("fp32") == ["--auto-cast", "none", "--model-type=transformer"]
    assert compiler_args("bf16")[:2] == ["--auto-cast", "matmult"]


def frames(n: int) -> list:
    from inference.types import DEFAULT_QUESTIONS, VQARequest

    rng = np.random.default_rng(0)
    return [VQARequest(i, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), DEFAULT_QUESTIONS) for i in range(n)]


def _compiled_matches_cpu(backend: str, dtype: str, tol: float, tmp_path) -> None:
    from inference.compile import compile_artifacts
    from inference.engine import load_engine

    compile_artifacts("tiny", backend=backend, batch_sizes=(1, 2), dtype=dtype, out=tmp_path, progress=lambda s: None)
    device = load_engine("tiny", backend=backend, artifacts=str(tmp_path))
    cpu = load_engine("tiny", dtype="fp32")
    reqs = frames(2)
    for a, b in zip(device.run(reqs), cpu.run(reqs), strict=True):
        for name in a.p_yes:
            assert abs(a.p_yes[name] - b.p_yes[name]) <= tol
    assert device.runners["vision"].calls["compiled"] == 1


@CUDA
@pytest.mark.parametrize(("dtype", "tol"), [("fp32", 1e-4), ("bf16", 0.05)])
def test_cuda_compiled_matches_cpu(tmp_path, dtype, tol):
    require("cuda", "FAIL_WITHOUT_CUDA")
    _compiled_matches_cpu("cuda", dtype, tol, tmp_path)


@NEURON
def test_neuron_compiled_matches_cpu(tmp_path):
    require("neuron", "FAIL_WITHOUT_NEURON")
    _compiled_matches_cpu("neuron", "fp32", 1e-3, tmp_path)


def test_load_engine_on_missing_cuda_says_what_is_missing():
    import torch

    from inference.engine import load_engine

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendUnavailable, match="backend 'cuda' needs a CUDA GPU"):
        load_engine("tiny", backend="cuda")
