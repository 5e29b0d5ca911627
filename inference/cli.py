"""`petstream compile`: argument parsing only; torch is imported on use."""

from __future__ import annotations

import argparse
import sys

BACKENDS = ("cpu", "cuda", "neuron")


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
        "TorchScript (or Neuron) artifacts with a manifest; `petstream serve --artifacts` loads them.",
        epilog="example:\n  petstream compile --model sim-tiny --batch-sizes 1,2,4 --out compiled/\n"
        "  petstream serve --model sim-tiny --artifacts compiled/",
    )
    p.add_argument(
        "--model", default="tiny", metavar="MODEL", help="tiny, sim-tiny, blip-base-random, a folder or a hub id"
    )
    p.add_argument("--backend", choices=BACKENDS, default="cpu", help="what the artifacts are compiled for")
    p.add_argument(
        "--batch-sizes",
        type=_batch_sizes,
        default="1,2,4,8",
        metavar="N,N,...",
        help="batch sizes to compile, comma-separated; inputs are padded up to one of them",
    )
    p.add_argument("--dtype", choices=("fp32", "bf16", "int8"), default="fp32", help="weights and activations")
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
    # on a terminal: a bar over the 3 stages x batch sizes; in pipes and CI: one line per artifact, as before
    progress = bar(total=3 * len(args.batch_sizes), desc="compile", unit="artifact")

    def report(line: str) -> None:
        if not enabled():
            print(line, flush=True)
        elif line.startswith("  "):
            progress.update(1)
            progress.set_postfix_str(line.split()[0] + " b" + line.split()[2])
        else:
            progress.write(line)

    compile_artifacts(
        args.model,
        backend=args.backend,
        batch_sizes=args.batch_sizes,
        dtype=args.dtype,
        out=args.out,
        questions=questions,
        progress=report,
    )
    progress.close()
    return 0
