"""`petstream compile` and `petstream bench inference`: argument parsing only; torch is imported on use."""

from __future__ import annotations

import argparse

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
    p = sub.add_parser("compile", help="trace the BLIP stages per batch size into artifacts with a manifest")
    p.add_argument("--model", default="tiny", help="tiny, sim-tiny, blip-base-random, a folder or a hub id")
    p.add_argument("--backend", choices=BACKENDS, default="cpu")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=(1, 2, 4, 8), help="comma-separated, e.g. 1,2,4,8")
    p.add_argument("--dtype", choices=("fp32", "bf16", "int8"), default="fp32")
    p.add_argument(
        "--question",
        action="append",
        dest="questions",
        metavar="TEXT",
        help="compile the text stages for these questions (repeatable; default: the default questions)",
    )
    p.add_argument("--out", required=True, help="artifact directory (created)")
    p.set_defaults(func=_compile)


def register_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inference", help="HF generate() baseline vs petstream stages on the same frames")
    p.add_argument("--model", default="blip-base-random")
    p.add_argument("--backend", choices=BACKENDS, default="cpu")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--questions", type=int, default=3, choices=(1, 2, 3))
    p.add_argument("--json", dest="json_out", default=None, help="write the result JSON here")
    p.set_defaults(func=_bench)


def _compile(args: argparse.Namespace) -> int:
    from inference.compile import compile_artifacts
    from inference.types import DEFAULT_QUESTIONS

    questions = args.questions or [q.text for q in DEFAULT_QUESTIONS]
    compile_artifacts(
        args.model,
        backend=args.backend,
        batch_sizes=args.batch_sizes,
        dtype=args.dtype,
        out=args.out,
        questions=questions,
        progress=lambda s: print(s, flush=True),
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from inference.bench import run_bench

    if args.frames < 1:
        raise SystemExit(f"--frames {args.frames}: must be at least 1")
    run_bench(
        args.model,
        frames=args.frames,
        questions=args.questions,
        backend=args.backend,
        json_out=args.json_out,
        print_fn=lambda s: print(s, flush=True),
    )
    return 0
