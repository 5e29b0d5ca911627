"""`petstream compile`: argument parsing only; torch is imported on use."""

from __future__ import annotations

import argparse
import sys

BACKENDS = ("cpu", "cuda", "neuron", "openvino")


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(b < 1 for b in sizes):
        raise argparse.ArgumentTypeError(f"--batch-sizes {text!r}: expected positive integers like 1,2,4,8")
    return sizes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compile",
        help="trace the BLIP stages per batch size into artifacts with a manifest",
        description="Trace the three BLIP stages (vision, text encoder, text decoder) for each batch size into "
        "TorchScript, Neuron or OpenVINO IR artifacts with a manifest; `petstream serve --artifacts` loads them.",
        epilog="example:\n  petstream compile --model sim-tiny --batch-sizes 1,2,4 --out compiled/\n"
        "  petstream serve --model sim-tiny --artifacts compiled/\n"
        "  petstream calibration --out frames.npz\n"
        "  petstream compile --model sim-tiny --backend openvino --dtype int8 --calibration frames.npz --out ov/",
    )
    p.add_argument(
        "--model", default="tiny", metavar="MODEL", help="tiny, sim-tiny, blip-base-random, a folder or a hub id"
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="cpu",
        help="what the artifacts are compiled for: cpu/cuda TorchScript, neuron torch_neuronx, openvino OpenVINO IR",
    )
    p.add_argument(
        "--batch-sizes",
        type=_batch_sizes,
        default="1,2,4,8",
        metavar="N,N,...",
        help="batch sizes to compile, comma-separated; inputs are padded up to one of them",
    )
    p.add_argument(
        "--dtype",
        choices=("fp32", "bf16", "int8"),
        default="fp32",
        help="weights and activations; int8: cpu = dynamic int8 vision linears + bf16, openvino = NNCF int8 "
        "vision and text encoder calibrated on real frames + bf16 decoder",
    )
    p.add_argument(
        "--calibration",
        metavar="NPZ",
        help="real frames for openvino int8, made by `petstream calibration` "
        "(default: the shipped set of simulator scenes through H.264)",
    )
    p.add_argument(
        "--question",
        action="append",
        dest="questions",
        metavar="TEXT",
        help="compile the text stages for these questions (repeatable; default: the default questions)",
    )
    p.add_argument("--out", required=True, metavar="PATH", help="artifact directory (created)")
    p.set_defaults(func=_compile)


def _compile(args: argparse.Namespace) -> int:
    from inference.compile import compile_artifacts
    from inference.models import resolve_model
    from inference.types import DEFAULT_QUESTIONS
    from petstream.progress import bar, enabled

    try:  # a model that does not exist is the user's mistake: one line, before anything is traced
        resolve_model(args.model)
    except ValueError as exc:
        print(f"petstream compile: {exc}", file=sys.stderr)
        return 2
    questions = args.questions or [q.text for q in DEFAULT_QUESTIONS]
    calibration = None
    if args.calibration:
        from inference.calibration import load_calibration

        try:
            calibration = load_calibration(args.calibration)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--calibration: {exc}") from None
    # on a terminal: a bar over the 3 stages (each compiled for every batch size); in pipes and CI: one line each
    progress = bar(total=3, desc="compile", unit="stage")

    def report(line: str) -> None:
        if not enabled():
            print(line, flush=True)
        elif line.startswith("  "):
            progress.update(1)
            progress.set_postfix_str(line.split()[0])
        else:
            progress.write(line)

    compile_artifacts(
        args.model,
        backend=args.backend,
        batch_sizes=args.batch_sizes,
        dtype=args.dtype,
        out=args.out,
        questions=questions,
        calibration=calibration,
        progress=report,
    )
    progress.close()
    return 0
