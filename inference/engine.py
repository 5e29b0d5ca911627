"""The batch engine: frames and questions in, p_yes per question out, through the staged (maybe compiled) BLIP."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any, Literal

import torch

from inference.backends import Backend, get_backend
from inference.cpufeatures import cpu_has_fast_bf16
from inference.preprocess import to_pixel_values
from inference.runner import StageRunner
from inference.stages import StagedBlip
from inference.types import Engine, StageTimings, VQARequest, VQAResult

log = logging.getLogger(__name__)

BackendName = Literal["cpu", "cuda", "neuron", "openvino"]
DtypeName = Literal["auto", "fp32", "bf16", "int8"]
#: "int8": on cpu, bf16 with the vision stage's linears in dynamic int8; on openvino, the vision stage in
#: NNCF static int8 (calibrated) and the rest in bf16 where the CPU has it
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.bfloat16}
INT8_BACKENDS = ("cpu", "openvino")
__all__ = ["BlipEngine", "cpu_has_fast_bf16", "load_engine", "resolve_dtype", "set_threads"]


def resolve_dtype(dtype: str, backend: str) -> str:
    """auto -> bf16 where the hardware computes it natively (GPU, Neuron, AMX/AVX-512 BF16 CPU), else fp32.

    "int8" is never chosen here (it needs calibration or a fidelity check: see inference.autobuild) and runs
    on the cpu and openvino backends only.
    """
    if dtype not in ("auto", *DTYPES):
        raise ValueError(f"dtype={dtype!r} is not one of auto, {', '.join(DTYPES)}")
    if dtype == "int8" and backend not in INT8_BACKENDS:
        raise ValueError(f"dtype='int8' runs on the {' and '.join(INT8_BACKENDS)} backends only, not {backend!r}")
    if dtype != "auto":
        return dtype
    if backend in ("cpu", "openvino"):
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "bf16"


class BlipEngine(Engine):
    """Runs VQA batches through the three stages; vision once per frame, text stages per question group."""

    def __init__(
        self,
        *,
        model_name: str,
        staged: StagedBlip,
        tokenizer: Any,
        backend: Backend,
        dtype: str,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        batch_sizes: tuple[int, ...],
    ) -> None:
        self.model_name = model_name
        self.staged = staged
        self.tokenizer = tokenizer
        self.backend = backend
        self.dtype = dtype
        self.image_size = image_size
        self.batch_sizes = tuple(sorted(batch_sizes))
        self._mean, self._std = tuple(mean), tuple(std)
        self.runners = {
            "vision": StageRunner("vision", staged.vision),
            "text": StageRunner("text", staged.text),
            "decoder": StageRunner("decoder", staged.decoder),
        }
        #: identifies the model's config and weights; compiled artifacts must carry the same
        self.fingerprint = ""
        self.revision: str | None = None
        self._tokens: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def host_dtype(self) -> torch.dtype:
        # neuron and openvino artifacts take fp32 and cast inside; elsewhere tensors carry the dtype
        return self.backend.host_dtype(self.dtype)

    def question_tokens(self, texts: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [Q,L] of a question set, right-padded to the longest, and the mask [Q,L]; cached."""
        cached = self._tokens.get(texts)
        if cached is None:
            enc = self.tokenizer(list(texts), padding=True, return_tensors="pt")
            cached = (enc["input_ids"].to(self.backend.device), enc["attention_mask"].to(self.backend.device))
            self._tokens[texts] = cached
        return cached

    def pixel_values(self, images: Sequence[Any]) -> torch.Tensor:
        """Frames (uint8 RGB, any size) -> the vision stage's input, on the backend's device and dtype."""
        pixels = to_pixel_values(images, self.image_size, self._mean, self._std)
        return pixels.to(self.backend.device, self.host_dtype)

    def close(self) -> None:
        """Drop the compiled artifacts and cached tokens; the engine falls back to eager if used again."""
        for runner in self.runners.values():
            runner.compiled.clear()
        self._tokens.clear()

    def run(self, requests: Sequence[VQARequest]) -> list[VQAResult]:
        step = self.batch_sizes[-1]
        out: list[VQAResult] = []
        for start in range(0, len(requests), step):
            out.extend(self._run_batch(requests[start : start + step]))
        return out

    @torch.inference_mode()
    def _run_batch(self, requests: Sequence[VQARequest]) -> list[VQAResult]:
        if not requests:
            return []
        sync = self.backend.synchronize
        t0 = time.perf_counter()
        pixels = self.pixel_values([r.image for r in requests])
        sync()
        t1 = time.perf_counter()
        image_kv, padded = self.runners["vision"](pixels)
        sync()
        t2 = time.perf_counter()
        by_set: dict[tuple[str, ...], list[int]] = {}
        for i, r in enumerate(requests):
            by_set.setdefault(tuple(q.text for q in r.questions), []).append(i)
        p_yes: list[list[float]] = [[0.0] * len(r.questions) for r in requests]
        text_s = decode_s = 0.0
        for texts, frames in by_set.items():
            kv = image_kv
            if len(frames) != len(requests):
                kv = image_kv.index_select(1, torch.tensor(frames, device=image_kv.device))
            ids, mask = self.question_tokens(texts)
            ta = time.perf_counter()
            question_embeds, _ = self.runners["text"](ids, mask, kv)
            sync()
            tb = time.perf_counter()
            p, _ = self.runners["decoder"](question_embeds, mask)
            p = p.float().cpu()
            tc = time.perf_counter()
            text_s += tb - ta
            decode_s += tc - tb
            for row, frame in enumerate(frames):
                p_yes[frame] = p[row].tolist()
        timings = StageTimings(
            preprocess_s=t1 - t0,
            vision_s=t2 - t1,
            text_s=text_s,
            decode_s=decode_s,
            batch_size=len(requests),
            padded_batch_size=padded,
        )
        return [
            VQAResult(key=r.key, p_yes={q.name: p_yes[i][j] for j, q in enumerate(r.questions)}, timings=timings)
            for i, r in enumerate(requests)
        ]


def set_threads(threads: int | None) -> int:
    """Use every core this process may run on (or `threads`); inter-op parallelism stays at 1."""
    n = threads or len(os.sched_getaffinity(0))
    if n < 1:
        raise ValueError(f"threads={threads!r} must be a positive integer")
    torch.set_num_threads(n)
    return n


def load_engine(
    model: str = "tiny",
    *,
    backend: BackendName = "cpu",
    dtype: DtypeName = "auto",
    artifacts: str | None = None,
    batch_sizes: Sequence[int] = (1, 2, 4, 8),
    threads: int | None = None,
) -> BlipEngine:
    """Load `model` (registry name, folder or hub id) on `backend`; with `artifacts`, run its compiled stages.

    With `artifacts`, the engine's batch sizes are the manifest's (the compiled buckets) and dtype "auto"
    means the manifest's dtype; an artifact directory that does not fit is refused (ArtifactMismatch).
    """
    from inference.models import load_model

    sizes = tuple(sorted(set(batch_sizes)))
    if not sizes or any(not isinstance(b, int) or b < 1 for b in sizes):
        raise ValueError(f"batch_sizes={tuple(batch_sizes)!r} must be positive integers")
    be = get_backend(backend)
    be.check_available()
    manifest = None
    if artifacts is not None:
        from inference.compile import read_manifest

        manifest = read_manifest(artifacts)
        if dtype == "auto":
            dtype = manifest["dtype"]
    resolved = resolve_dtype(dtype, backend)
    if backend in ("cpu", "openvino"):  # openvino: its runtime threads, and torch's for eager fallbacks
        be.threads = set_threads(threads)
    hf_model, processor = load_model(model)
    engine = _build_engine(model, hf_model, processor, be, resolved, sizes)
    if artifacts is not None:
        from inference.compile import attach_artifacts

        sizes = attach_artifacts(engine, artifacts)
        engine.batch_sizes = sizes
    log.info("engine %s on %s, %s, batch sizes %s", model, backend, resolved, engine.batch_sizes)
    return engine


def _build_engine(
    name: str, hf_model: Any, processor: Any, backend: Backend, dtype: str, sizes: tuple[int, ...]
) -> BlipEngine:
    from inference.models import model_fingerprint
    from inference.stages import Int8VisionStage

    fingerprint = model_fingerprint(hf_model)  # before the cast: the staged modules share its weights
    staged = StagedBlip(hf_model, processor.tokenizer)
    staged = backend.prepare(staged.to(backend.host_dtype(dtype)))  # type: ignore[assignment]
    if dtype == "int8" and backend.name == "cpu":
        staged.vision = Int8VisionStage(staged.vision).eval()  # type: ignore[assignment]
    ip = processor.image_processor
    engine = BlipEngine(
        model_name=name,
        staged=staged,
        tokenizer=processor.tokenizer,
        backend=backend,
        dtype=dtype,
        image_size=int(ip.size["height"]),
        mean=ip.image_mean,
        std=ip.image_std,
        batch_sizes=sizes,
    )
    engine.fingerprint = fingerprint
    engine.revision = getattr(hf_model.config, "_commit_hash", None)
    return engine
