#!/usr/bin/env bash
# One-shot CUDA check: needs_cuda tests (must not skip), the GPU benchmark and the cuda pool through the router.
# Writes everything under $OUT (the device tool brings it back). Usage: OUT=/tmp/out bash bench/gpu_check.sh
set -u
OUT=${OUT:-/tmp/petstream_gpu}
mkdir -p "$OUT"
export PETSTREAM_CACHE=/tmp/petstream_cache PYTHONPATH=$PWD FAIL_WITHOUT_CUDA=1
PY=${PY:-python3}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available()); print('transformers', transformers.__version__)"
  $PY -c "import pytest; print('pytest', pytest.__version__)" || echo "pytest missing"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if $PY -c "import pytest" 2>/dev/null; then
  timeout 60 $PY -m pytest -q -p no:cacheprovider -o addopts="" tests/test_inference_backends.py \
    tests/test_inference_stages.py -k "cuda or staged_batched or shared_kv" > "$OUT/pytest.txt" 2>&1
  echo "pytest rc=$?" >> "$OUT/pytest.txt"
  tail -5 "$OUT/pytest.txt"
fi
# the bench module directly: the petstream dispatcher imports every package's CLI (grpc, av, ...)
timeout 125 $PY -c "from bench.inference import run_bench; run_bench('blip-base-random', frames=4, \
  backend='cuda', json_out='$OUT/inference_cuda.json')" > "$OUT/bench.txt" 2>&1
echo "bench rc=$?" >> "$OUT/bench.txt"
grep -v "Loading\|Writing" "$OUT/bench.txt" | tail -20
# the cuda pool through the router: served by cuda, live switch to cpu, failover when cuda fails (issue 13)
timeout 120 $PY -m bench.gpu_router_check "$OUT/router_cuda.json" > "$OUT/router.txt" 2>&1
echo "router rc=$?" >> "$OUT/router.txt"
tail -3 "$OUT/router.txt"
