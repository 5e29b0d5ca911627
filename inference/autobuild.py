"""Fast by default: pick the fastest setting that keeps fidelity from the CPU's features, build its compiled
stages once and cache them by model fingerprint; later starts load them from the cache.

The ranking is what `petstream bench inference` measured on CPUs with these features (docs/inference.md):
openvino before cpu at every precision, int8 before bf16 before fp32. A freshly built setting must give p_yes
within MAX_P_YES_DIFF of the fp32 stages on held-out real frames, or the next one is tried; the verdict is
stored beside the artifacts. A cache entry whose manifest does not fit (other weights, library, tampered
file) is rebuilt, never served. Explicit backend/dtype choices are honoured as given (no fidelity gate).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.backends import BackendUnavailable, get_backend
from inference.calibration import CalibrationSet, load_calibration
from inference.compile import ArtifactMismatch, attach_artifacts, compile_artifacts, read_manifest
from inference.cpufeatures import cpu_has_fast_bf16, cpu_has_int8_dot, feature_summary
from inference.engine import BlipEngine, load_engine
from inference.types import DEFAULT_QUESTIONS, Question, VQARequest

log = logging.getLogger(__name__)

MAX_P_YES_DIFF = 0.02
#: frames of the calibration set held out of calibration and used for the fidelity check
GATE_FRAMES = 4
VERDICT = "fidelity.json"
#: code whose change makes cached artifacts stale even with the same weights
_CODE = ("stages.py", "compile.py", "backends/openvino.py", "backends/cpu.py")
_WHAT = {
    ("openvino", "int8"): "OpenVINO, vision and text encoder in NNCF int8 (calibrated), the rest bf16",
    ("openvino", "bf16"): "OpenVINO, bf16",
    ("openvino", "fp32"): "OpenVINO, fp32",
    ("cpu", "int8"): "TorchScript, vision linears in dynamic int8, the rest bf16",
    ("cpu", "bf16"): "TorchScript, bf16",
    ("cpu", "fp32"): "TorchScript, fp32",
}


@dataclass(frozen=True)
class Choice:
    """One setting to try: backend and dtype, and why it is on the list."""

    backend: str
    dtype: str
    reason: str
    gated: bool = True  # False when the user asked for it explicitly


@dataclass(frozen=True)
class Decision:
    """What the server runs and why: for the start-up log."""

    backend: str
    dtype: str
    artifacts: Path
    built: bool
    max_p_yes_diff: float | None
    reason: str
    rejected: tuple[str, ...] = ()

    def log_lines(self) -> list[str]:
        what = _WHAT.get((self.backend, self.dtype), f"{self.backend} {self.dtype}")
        how = "built now" if self.built else "loaded from the cache"
        fid = (
            ""
            if self.max_p_yes_diff is None
            else f"; max |dp_yes| {self.max_p_yes_diff:.1e} vs fp32 on held-out frames"
        )
        lines = [f"inference: {self.backend}/{self.dtype} ({what}), compiled stages {how}: {self.artifacts}"]
        lines.append(
            f"  why: {self.reason}{fid}" + (f"; rejected: {'; '.join(self.rejected)}" if self.rejected else "")
        )
        return lines


def openvino_installed() -> bool:
    try:
        get_backend("openvino").check_available()
    except BackendUnavailable:
        return False
    return True


def candidates(
    backend: str = "auto", dtype: str = "auto", *, cpuinfo: str | None = None, openvino: bool | None = None
) -> list[Choice]:
    """Settings to try, fastest first, from the CPU's features (explicit choices narrow the list to one)."""
    feats = feature_summary(cpuinfo)
    bf16, int8 = cpu_has_fast_bf16(cpuinfo), cpu_has_int8_dot(cpuinfo)
    if backend == "auto":
        have_ov = openvino_installed() if openvino is None else openvino
        backend = "openvino" if have_ov else "cpu"
        why_backend = "openvino is installed (fastest measured)" if have_ov else "openvino not installed"
    else:
        why_backend = f"--backend {backend}"
    if dtype != "auto":
        return [Choice(backend, dtype, f"asked for ({why_backend}, --dtype {dtype})", gated=False)]
    if backend not in ("cpu", "openvino"):
        return [Choice(backend, "bf16", f"{why_backend}: bf16 on accelerators", gated=False)]
    out = []
    if int8 and (bf16 or backend == "openvino"):
        out.append(Choice(backend, "int8", f"{why_backend}; CPU has {feats}: int8 dot products"))
    if bf16:
        out.append(Choice(backend, "bf16", f"{why_backend}; CPU has {feats}: native bf16"))
    out.append(Choice(backend, "fp32", f"{why_backend}; CPU has {feats}", gated=False))
    return out


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """$PETSTREAM_CACHE/artifacts (default ~/.cache/petstream/artifacts), or `cache_dir` when given."""
    if cache_dir is not None:
        return Path(cache_dir)
    base = os.environ.get("PETSTREAM_CACHE") or str(Path.home() / ".cache" / "petstream")
    return Path(base) / "artifacts"


def cache_key(engine: BlipEngine, questions: Sequence[str], calibration: CalibrationSet | None) -> str:
    """Everything the compiled stages depend on: weights, backend, dtype, shapes, libraries, calibration, code."""
    here = Path(__file__).parent
    code = hashlib.sha256(b"".join((here / name).read_bytes() for name in _CODE)).hexdigest()
    parts = {
        "model_fingerprint": engine.fingerprint,
        "backend": engine.backend.name,
        "dtype": engine.dtype,
        "batch_sizes": list(engine.batch_sizes),
        "questions": list(questions),
        "versions": engine.backend.versions(),
        "calibration": None if calibration is None else calibration.sha256,
        "code": code,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _slug(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in model.strip("/"))[-60:]


def _p_yes(engine: BlipEngine, frames: np.ndarray, questions: tuple[Question, ...]) -> np.ndarray:
    results = engine.run([VQARequest(i, f, questions) for i, f in enumerate(frames)])
    return np.array([[r.p_yes[q.name] for q in questions] for r in results])


def _reference(model: str, engine: BlipEngine, frames: np.ndarray, questions: tuple[Question, ...]) -> np.ndarray:
    """p_yes of the fp32 stages (equal to the unmodified model to ~1e-6): the eager engine itself when it
    runs in fp32 (openvino keeps its eager stages in fp32), else a separate fp32 engine."""
    import torch

    if engine.host_dtype == torch.float32 and engine.dtype == "fp32" or engine.backend.name == "openvino":
        return _p_yes(engine, frames, questions)
    ref = load_engine(model, backend="cpu", dtype="fp32", batch_sizes=engine.batch_sizes)
    try:
        return _p_yes(ref, frames, questions)
    finally:
        ref.close()


def _entry(root: Path, model: str, choice: Choice, key: str) -> Path:
    return root / _slug(model) / f"{choice.backend}-{choice.dtype}-{key[:16]}"


def build_or_load(
    model: str,
    choice: Choice,
    *,
    batch_sizes: Sequence[int],
    threads: int | None,
    root: Path,
    questions: tuple[Question, ...] = DEFAULT_QUESTIONS,
    progress: Any = log.info,
) -> tuple[BlipEngine, Path, bool, dict[str, Any]]:
    """Engine with `choice`'s compiled stages from the cache (or built into it now), and the fidelity verdict."""
    from filelock import FileLock

    texts = tuple(q.text for q in questions)
    calibration, gate = load_calibration().split(GATE_FRAMES)
    engine = load_engine(model, backend=choice.backend, dtype=choice.dtype, batch_sizes=batch_sizes, threads=threads)  # type: ignore[arg-type]
    calib = calibration if (choice.backend == "openvino" and choice.dtype == "int8") else None
    entry = _entry(root, model, choice, cache_key(engine, texts, calib))
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        if (entry / VERDICT).is_file():
            verdict = json.loads((entry / VERDICT).read_text())
            if not verdict["passed"]:
                return engine, entry, False, verdict
            try:
                engine.batch_sizes = attach_artifacts(engine, entry)
                return engine, entry, False, verdict
            except ArtifactMismatch as exc:
                log.warning("cached artifacts do not fit, rebuilding: %s", exc)
                for runner in engine.runners.values():
                    runner.compiled.clear()
        shutil.rmtree(entry, ignore_errors=True)
        for stale in entry.parent.glob(entry.name + ".*"):  # a build killed part-way (SIGTERM/SIGKILL: no cleanup);
            if stale.is_dir():  # the lock says no other build of this entry runs (a blip-base one is ~2.9 GB)
                shutil.rmtree(stale, ignore_errors=True)
        t0 = time.perf_counter()
        reference = _reference(model, engine, gate, questions) if choice.gated else None
        tmp = Path(tempfile.mkdtemp(prefix=entry.name + ".", dir=entry.parent))
        try:
            compile_artifacts(
                model,
                backend=choice.backend,
                dtype=choice.dtype,
                out=tmp,
                questions=texts,
                calibration=calib,
                engine=engine,
                progress=progress,
            )
            engine.batch_sizes = attach_artifacts(engine, tmp)
            diff = None if reference is None else float(np.abs(_p_yes(engine, gate, questions) - reference).max())
            passed = diff is None or diff <= MAX_P_YES_DIFF
            verdict = {
                "passed": passed,
                "max_abs_p_yes_diff": diff,
                "bound": MAX_P_YES_DIFF,
                "gate_frames": len(gate),
                "reference": "the same stages eager in fp32",
                "build_s": time.perf_counter() - t0,
            }
            (tmp / VERDICT).write_text(json.dumps(verdict, indent=2) + "\n")
            if not passed:  # keep only the verdict: later starts skip this setting without rebuilding it
                for path in tmp.iterdir():
                    if path.name not in (VERDICT, "manifest.json"):
                        path.unlink()
            for runner in engine.runners.values():
                runner.compiled.clear()  # re-attached from the final location below
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if passed:
            engine.batch_sizes = attach_artifacts(engine, entry)
        return engine, entry, True, verdict


def load_fast_engine(
    model: str,
    *,
    backend: str = "auto",
    dtype: str = "auto",
    batch_sizes: Sequence[int] = (1, 2, 4, 8),
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    progress: Any = log.info,
) -> tuple[BlipEngine, Decision]:
    """The fastest setting within fidelity, compiled and cached; `backend`/`dtype` other than auto are honoured."""
    root = cache_root(cache_dir)
    rejected: list[str] = []
    for choice in candidates(backend, dtype):
        engine, entry, built, verdict = build_or_load(
            model, choice, batch_sizes=batch_sizes, threads=threads, root=root, progress=progress
        )
        if verdict["passed"]:
            return engine, Decision(
                choice.backend,
                choice.dtype,
                entry,
                built,
                verdict["max_abs_p_yes_diff"],
                choice.reason,
                tuple(rejected),
            )
        engine.close()
        rejected.append(
            f"{choice.backend}/{choice.dtype} (max |dp_yes| {verdict['max_abs_p_yes_diff']:.3f} > {MAX_P_YES_DIFF})"
        )
        log.info(
            "%s/%s rejected: max |dp_yes| %.3f > %.2f",
            choice.backend,
            choice.dtype,
            verdict["max_abs_p_yes_diff"],
            MAX_P_YES_DIFF,
        )
    raise RuntimeError(f"no setting passed the fidelity check: {'; '.join(rejected)}")  # fp32 is never gated


def manifest_backend(artifacts: str) -> str:
    """The backend an artifact directory was compiled for (so `--artifacts` works with backend auto)."""
    return str(read_manifest(artifacts)["backend"])
