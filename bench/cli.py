"""`petstream bench ...`: every benchmark's argument parsing; the measuring code is imported on use."""

from __future__ import annotations

import argparse

BACKENDS = ("cpu", "cuda", "neuron")


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks: baseline and petstream measured in one run, JSON out")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")

    p = bench_sub.add_parser("inference", help="HF generate() baseline vs petstream stages on the same frames")
    p.add_argument("--model", default="blip-base-random")
    p.add_argument("--backend", choices=BACKENDS, default="cpu")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--questions", type=int, default=3, choices=(1, 2, 3))
    p.add_argument("--json", dest="json_out", default=None, help="write the result JSON here")
    p.set_defaults(func=_bench_inference)

    p = bench_sub.add_parser("pipeline", help="the streaming pipeline vs the engine alone and PyAV alone (JSON out)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test (figures mean nothing)")
    p.set_defaults(func=_bench_pipeline)


def _bench_inference(args: argparse.Namespace) -> int:
    from bench.inference import run_bench

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


def _bench_pipeline(args: argparse.Namespace) -> int:
    from bench.pipeline import main

    return main(args.json, args.quick)
