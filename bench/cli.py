"""`petstream bench ...`: every benchmark's argument parsing; the measuring code is imported on use."""

from __future__ import annotations

import argparse

BACKENDS = ("cpu", "cuda", "neuron")


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="benchmarks: baseline and petstream measured in one run, JSON out",
        description="Benchmarks. Each measures its baseline and petstream side by side in the same run, prints a "
        "table and writes JSON.",
        epilog="examples:\n  petstream bench inference --model blip-base-random --frames 8 --json out.json\n"
        "  petstream bench pipeline --quick",
    )
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")

    p = bench_sub.add_parser(
        "inference",
        help="HF generate() baseline vs petstream stages on the same frames",
        description="The HF BlipProcessor + generate() loop against petstream's stages (fp32, bf16, int8, "
        "compiled) on the same frames, interleaved frame by frame; medians and p_yes differences.",
        epilog="example:\n  petstream bench inference --model blip-base-random --frames 8 --json bench/results/x.json",
    )
    p.add_argument("--model", default="blip-base-random", metavar="MODEL", help="the model to measure")
    p.add_argument("--backend", choices=BACKENDS, default="cpu", help="where petstream's stages run")
    p.add_argument("--frames", type=int, default=8, metavar="N", help="frames measured per setting")
    p.add_argument("--questions", type=int, default=3, choices=(1, 2, 3), help="questions per frame")
    p.add_argument("--json", dest="json_out", metavar="PATH", help="write the result JSON here (default: print only)")
    p.set_defaults(func=_bench_inference)

    p = bench_sub.add_parser(
        "pipeline",
        help="the streaming pipeline vs the engine alone and PyAV alone (JSON out)",
        description="Ingest, gating, batching and latency of the streaming pipeline, each against its baseline "
        "(PyAV decoding alone, the engine alone) in the same run.",
        epilog="example:\n  petstream bench pipeline --json bench/results/pipeline.json",
    )
    p.add_argument("--json", metavar="PATH", help="write the results here (default: print only)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test (figures mean nothing)")
    p.set_defaults(func=_bench_pipeline)


def _bench_inference(args: argparse.Namespace) -> int:
    from bench.inference import run_bench
    from inference.models import resolve_model

    if args.frames < 1:
        raise SystemExit(f"petstream bench inference: --frames {args.frames}: must be at least 1")
    try:  # a model that does not exist is the user's mistake: one line
        resolve_model(args.model)
    except ValueError as exc:
        raise SystemExit(f"petstream bench inference: {exc}") from None
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
