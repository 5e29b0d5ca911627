"""`petstream compile`: trace each stage per batch size into artifacts with a manifest; check and load them."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from inference.runner import LAYOUTS, signature
from inference.types import DEFAULT_QUESTIONS

if TYPE_CHECKING:
    from inference.engine import BlipEngine

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
DEFAULT_TEXTS = tuple(q.text for q in DEFAULT_QUESTIONS)


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
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Trace vision, text encoder and decoder for every batch size; write one file per (stage, shape) + manifest.

    The text stages are compiled for `questions` (default: the three default questions) right-padded to the
    longest: one text-encoder and one decoder artifact per batch size. Only shapes matter, so any question
    set with as many questions and the same padded length uses them; others run those stages eagerly.
    """
    from inference.engine import load_engine

    if dtype not in ("fp32", "bf16", "int8"):
        raise ValueError(f"dtype={dtype!r} is not one of fp32, bf16, int8")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    engine = load_engine(model, backend=backend, dtype=dtype, batch_sizes=batch_sizes)  # type: ignore[arg-type]
    be, staged = engine.backend, engine.staged
    entries: list[dict[str, Any]] = []
    texts = tuple(questions)

    def emit(stage: str, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], batch: int, name: str) -> None:
        path = out / name
        t0 = time.perf_counter()
        be.save(be.trace(module, inputs, dtype=dtype), path)
        sig = signature(inputs, LAYOUTS[stage])
        entries.append(
            {
                "stage": stage,
                "file": name,
                "batch_size": batch,
                "inputs": [{"shape": list(shape), "dtype": dt} for shape, dt in sig],
                "sha256": sha256_file(path),
            }
        )
        progress(f"  {stage:<8} batch {batch:>2}  {name:<28} {time.perf_counter() - t0:6.1f} s")

    progress(f"compiling {model} for {backend} ({dtype}), batch sizes {tuple(engine.batch_sizes)} -> {out}")
    with torch.inference_mode(False), torch.no_grad():
        for b in engine.batch_sizes:
            size = engine.image_size
            pixels = torch.zeros(b, 3, size, size, dtype=engine.host_dtype, device=be.device)
            emit("vision", staged.vision, (pixels,), b, f"vision_b{b}.pt")
            image_kv = staged.vision(pixels)
            ids, mask = engine.question_tokens(texts)
            q, length = ids.shape
            emit("text", staged.text, (ids, mask, image_kv), b, f"text_b{b}_q{q}_l{length}.pt")
            embeds = staged.text(ids, mask, image_kv)
            emit("decoder", staged.decoder, (embeds, mask), b, f"decoder_b{b}_q{q}_l{length}.pt")
    manifest = {
        "format": FORMAT_VERSION,
        "model": model,
        "model_fingerprint": engine.fingerprint,
        "revision": engine.revision,
        "backend": backend,
        "dtype": dtype,
        "image_size": engine.image_size,
        "batch_sizes": list(engine.batch_sizes),
        "questions": list(texts),
        "versions": be.versions(),
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
    if problems:
        raise ArtifactMismatch(f"refusing artifacts in {directory}:\n  " + "\n  ".join(problems))


def attach_artifacts(engine: BlipEngine, directory: str | Path) -> tuple[int, ...]:
    """Check the manifest against `engine` and hand each artifact to its stage runner; returns the batch sizes."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    check_manifest(manifest, engine, directory)
    for entry in manifest["artifacts"]:
        sig = tuple((tuple(i["shape"]), i["dtype"]) for i in entry["inputs"])
        fn = engine.backend.load(directory / entry["file"])
        engine.runners[entry["stage"]].add(entry["batch_size"], sig, fn)
    return tuple(manifest["batch_sizes"])
