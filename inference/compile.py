"""`petstream compile`: trace each stage per batch size into artifacts with a manifest; check and load them."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from inference.calibration import CalibrationSet, load_calibration
from inference.runner import LAYOUTS, pad_batch, signature
from inference.types import DEFAULT_QUESTIONS

if TYPE_CHECKING:
    from inference.engine import BlipEngine

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
DEFAULT_TEXTS = tuple(q.text for q in DEFAULT_QUESTIONS)
#: backends whose int8 is static (quantization ranges calibrated on real frames at compile time)
STATIC_INT8_BACKENDS = ("openvino",)
#: calibration frames whose image K/V calibrate the text encoder (each holds every layer's K/V: ~42 MB at 384 px)
TEXT_CALIBRATION_FRAMES = 12


class ArtifactMismatch(ValueError):
    """An artifact directory does not fit the engine being loaded; the message lists what differs."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def compile_artifacts(
    model: str,
    *,
    backend: str = "cpu",
    batch_sizes: Sequence[int] = (1, 2, 4, 8),
    dtype: str = "fp32",
    out: str | Path,
    questions: Sequence[str] = DEFAULT_TEXTS,
    calibration: CalibrationSet | None = None,
    engine: BlipEngine | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trace vision, text encoder and decoder for every batch size; write one artifact per (stage, shape) + manifest.

    The text stages are compiled for `questions` (default: the three default questions) right-padded to the
    longest: one text-encoder and one decoder artifact per batch size. Only shapes matter, so any question
    set with as many questions and the same padded length uses them; others run those stages eagerly.
    `calibration` (real frames) feeds static int8 on backends that quantize that way (openvino int8: the
    shipped set of simulator scenes through H.264 when None); dynamic int8 on the cpu backend needs none.
    `engine` reuses an eager engine already loaded for this model, backend and dtype.
    """
    from inference.engine import load_engine

    if dtype not in ("fp32", "bf16", "int8"):
        raise ValueError(f"dtype={dtype!r} is not one of fp32, bf16, int8")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if engine is None:
        engine = load_engine(model, backend=backend, dtype=dtype, batch_sizes=batch_sizes)  # type: ignore[arg-type]
    be, staged = engine.backend, engine.staged
    if be.name != backend or engine.dtype != dtype:
        raise ValueError(f"engine is {be.name}/{engine.dtype}, asked to compile {backend}/{dtype}")
    static_int8 = backend in STATIC_INT8_BACKENDS and dtype == "int8"
    if static_int8 and calibration is None:
        calibration = load_calibration()
        progress(f"calibrating int8 on the shipped set: {calibration!r}")
    elif calibration is not None and not static_int8:
        progress(f"note: {backend}/{dtype} does not calibrate; the calibration set is not used")
        calibration = None
    entries: list[dict[str, Any]] = []
    texts = tuple(questions)
    sizes = tuple(engine.batch_sizes)

    def emit(
        stage: str,
        module: torch.nn.Module,
        buckets: Mapping[int, tuple[torch.Tensor, ...]],
        name: str,
        calib: Sequence[tuple[torch.Tensor, ...]] | None = None,
    ) -> None:
        t0 = time.perf_counter()
        lay = LAYOUTS[stage]
        compiled = be.trace_buckets(
            module, buckets, dtype=dtype, batch=(lay.batch_input, lay.batch_dim), calibration=calib
        )
        for b, inputs in buckets.items():
            file = name.format(b=b) + be.artifact_suffix
            written = be.save(compiled[b], out / file)
            sig = signature(inputs, lay)
            entry: dict[str, Any] = {
                "stage": stage,
                "file": file,
                "batch_size": b,
                "inputs": [{"shape": list(shape), "dtype": dt} for shape, dt in sig],
                "sha256": sha256_file(out / file),
            }
            sidecars = [{"file": p.name, "sha256": sha256_file(p)} for p in written if p.name != file]
            if sidecars:
                entry["sidecars"] = sidecars  # e.g. an OpenVINO IR's .bin beside its .xml
            entries.append(entry)
        took = time.perf_counter() - t0
        progress(f"  {stage:<8} batch sizes {','.join(map(str, buckets))}  {name.format(b='*'):<22} {took:6.1f} s")

    progress(f"compiling {model} for {backend} ({dtype}), batch sizes {sizes} -> {out}")
    with torch.inference_mode(False), torch.no_grad():
        size = engine.image_size
        pixels = torch.zeros(1, 3, size, size, dtype=engine.host_dtype, device=be.device)
        calib = None
        if calibration is not None:
            calib = [(engine.pixel_values([frame]),) for frame in calibration.frames]
        emit("vision", staged.vision, {b: (pad_batch(pixels, 0, b),) for b in sizes}, "vision_b{b}", calib)
        image_kv = staged.vision(pixels)
        ids, mask = engine.question_tokens(texts)
        q, length = ids.shape
        text_in = {b: (ids, mask, pad_batch(image_kv, 1, b)) for b in sizes}
        text_calib = None
        if calib is not None:  # the text encoder is calibrated on the real frames' image K/V (fp32 stages)
            text_calib = [(ids, mask, staged.vision(x)) for (x,) in calib[:TEXT_CALIBRATION_FRAMES]]
        emit("text", staged.text, text_in, f"text_b{{b}}_q{q}_l{length}", text_calib)
        embeds = staged.text(ids, mask, image_kv)
        emit(
            "decoder",
            staged.decoder,
            {b: (pad_batch(embeds, 0, b), mask) for b in sizes},
            f"decoder_b{{b}}_q{q}_l{length}",
        )
    manifest = {
        "format": FORMAT_VERSION,
        "model": model,
        "model_fingerprint": engine.fingerprint,
        "revision": engine.revision,
        "backend": backend,
        "dtype": dtype,
        "image_size": engine.image_size,
        "batch_sizes": list(sizes),
        "questions": list(texts),
        "versions": be.versions(),
        "calibration": None
        if calibration is None
        else {**calibration.describe(), "stages": {"vision": len(calibration), "text": len(text_calib or [])}},
        "artifacts": entries,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    progress(f"wrote {len(entries)} artifacts and {MANIFEST} to {out}")
    return manifest


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ArtifactMismatch(f"artifacts={str(directory)!r} has no {MANIFEST}; create it with `petstream compile`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise ArtifactMismatch(f"{path}: format {manifest.get('format')!r}, this petstream reads {FORMAT_VERSION}")
    return manifest


def check_manifest(manifest: dict[str, Any], engine: BlipEngine, directory: Path) -> None:
    """Refuse artifacts made for another backend, model, dtype or library version, or changed since."""
    problems = []
    expect = {
        "backend": engine.backend.name,
        "model_fingerprint": engine.fingerprint,
        "dtype": engine.dtype,
        "image_size": engine.image_size,
    }
    for key, want in expect.items():
        if manifest.get(key) != want:
            problems.append(f"{key}: artifacts have {manifest.get(key)!r}, engine has {want!r}")
    if manifest.get("model") != engine.model_name and manifest.get("model_fingerprint") != engine.fingerprint:
        problems.append(f"model: artifacts were compiled from {manifest.get('model')!r}, not {engine.model_name!r}")
    have = engine.backend.versions()
    for lib, version in manifest.get("versions", {}).items():
        if have.get(lib) != version:
            problems.append(f"versions.{lib}: artifacts need {version}, installed {have.get(lib)}")
    for entry in manifest.get("artifacts", []):
        path = directory / entry["file"]
        if not path.is_file():
            problems.append(f"{entry['file']}: missing")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{entry['file']}: sha256 differs from the manifest (file changed after compiling)")
        for side in entry.get("sidecars", []):
            side_path = directory / side["file"]
            if not side_path.is_file():
                problems.append(f"{side['file']}: missing")
            elif sha256_file(side_path) != side["sha256"]:
                problems.append(f"{side['file']}: sha256 differs from the manifest (file changed after compiling)")
    if problems:
        raise ArtifactMismatch(f"refusing artifacts in {directory}:\n  " + "\n  ".join(problems))


def attach_artifacts(engine: BlipEngine, directory: str | Path) -> tuple[int, ...]:
    """Check the manifest against `engine` and hand each artifact to its stage runner; returns the batch sizes."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    check_manifest(manifest, engine, directory)
    for entry in manifest["artifacts"]:
        sig = tuple((tuple(i["shape"]), i["dtype"]) for i in entry["inputs"])
        fn = engine.backend.load(directory / entry["file"], dtype=manifest["dtype"])
        engine.runners[entry["stage"]].add(entry["batch_size"], sig, fn)
    return tuple(manifest["batch_sizes"])
