"""`petstream bench ...`: every benchmark's argument parsing; the measuring code is imported on use."""

from __future__ import annotations

import argparse

BACKENDS = ("cpu", "cuda", "neuron")  # openvino settings run beside cpu ones (backend cpu)


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="benchmarks: baseline and petstream measured in one run, JSON out",
        description="Benchmarks. Each measures its baseline and petstream side by side in the same run, prints a "
        "table and writes JSON.",
        epilog="examples:\n  petstream bench inference --model blip-base-random --frames 8 --json out.json\n"
        "  petstream bench pipeline --quick\n  petstream bench pipeline --pinned --json pinned.json\n"
        "  petstream bench scaleout --json scaleout.json",
    )
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")

    p = bench_sub.add_parser(
        "inference",
        help="HF generate() baseline vs petstream stages on the same frames",
        description="The HF BlipProcessor + generate() loop against petstream's stages (TorchScript and OpenVINO; "
        "fp32, bf16, int8) and peer vision runtimes (ONNX Runtime, OpenVINO as it comes) on the same frames, "
        "interleaved frame by frame; medians per stage and p_yes differences from fp32.",
        epilog="example:\n  petstream bench inference --model blip-base-random --frames 8 --json bench/results/x.json",
    )
    p.add_argument("--model", default="blip-base-random", metavar="MODEL", help="the model to measure")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="cpu",
        help="where petstream's stages run; cpu also measures the OpenVINO settings and peers when installed",
    )
    p.add_argument("--frames", type=int, default=8, metavar="N", help="frames measured per setting")
    p.add_argument("--questions", type=int, default=3, choices=(1, 2, 3), help="questions per frame")
    p.add_argument(
        "--frames-from",
        choices=("scenes", "noise"),
        default="scenes",
        help="scenes: simulator scenes through H.264; noise: blocky random frames",
    )
    p.add_argument(
        "--no-peers",
        dest="peers",
        action="store_false",
        help="skip the peer vision runtimes (ONNX Runtime fp32/int8, OpenVINO as it comes) (default: measure them)",
    )
    p.add_argument("--json", dest="json_out", metavar="PATH", help="write the result JSON here (default: print only)")
    p.set_defaults(func=_bench_inference)

    p = bench_sub.add_parser(
        "ask",
        help="a server on its defaults answering Ask vs the HF generate() loop (JSON out)",
        description="Starts `petstream serve --model MODEL` with no other flags (compiled stages from the cache, or "
        "built on this first start), asks each image the three default questions over gRPC, and runs the "
        "generate() loop on the same images in the same run.",
        epilog="example:\n  petstream bench ask --model blip-base-random --json bench/results/ask_defaults.json",
    )
    p.add_argument("--model", default="blip-base-random", metavar="MODEL", help="the model the server serves")
    p.add_argument("--images", type=int, default=6, metavar="N", help="images asked, three questions each")
    p.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra `petstream serve` argument, repeatable (default: none, the server's defaults)",
    )
    p.add_argument("--json", dest="json_out", metavar="PATH", help="write the result JSON here (default: print only)")
    p.set_defaults(func=_bench_ask)

    p = bench_sub.add_parser(
        "pipeline",
        help="the streaming pipeline vs the engine alone and PyAV alone (JSON out)",
        description="Ingest, gating, batching and latency of the streaming pipeline, each against its baseline "
        "(PyAV decoding alone, the engine alone) in the same run.",
        epilog="example:\n  petstream bench pipeline --json bench/results/pipeline.json",
    )
    p.add_argument("--json", metavar="PATH", help="write the results here (default: print only)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test (figures mean nothing)")
    p.add_argument(
        "--pinned",
        action="store_true",
        help="only the pinned mode: ingest on one core, the model on another, against PyAV alone on one core "
        "(default: off)",
    )
    p.set_defaults(func=_bench_pipeline)

    p = bench_sub.add_parser(
        "scaleout",
        help="ingest with 1 and 2 worker processes, the Ray tier's overhead per frame, pinned ingest (JSON out)",
        description="Scale-out figures side by side in one run: ingest capacity of `serve --workers 1` and "
        "`--workers 2`, the same batches through the local engine and through a Ray Serve replica of it (needs "
        "the [ray] extra), and the pinned mode's ingest against PyAV alone on one core.",
        epilog="example:\n  petstream bench scaleout --json bench/results/scaleout.json",
    )
    p.add_argument("--json", metavar="PATH", help="write the results here (default: print only)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test (figures mean nothing)")
    p.set_defaults(func=_bench_scaleout)

    p = bench_sub.add_parser(
        "restart",
        help="SIGTERM and restart a server while cameras stream; events vs scripts, with and without",
        description="Simulated cameras (sim-tiny scripts) stream to a server process; half-way it gets SIGTERM and "
        "is started again on the same port and data folder while a WatchEvents subscriber follows. The same run "
        "without the restart is the baseline: events delivered once, episodes against the scripts, splits, "
        "reconnects.",
        epilog="example:\n  petstream bench restart --cameras 20 --seconds 90 --json bench/results/restart.json",
    )
    p.add_argument("--cameras", type=int, default=20, metavar="N", help="simulated cameras (default: 20)")
    p.add_argument("--seconds", type=float, default=120.0, metavar="S", help="video each camera streams (default: 120)")
    p.add_argument("--speed", type=float, default=1.0, metavar="X", help="pace relative to real time (default: 1)")
    p.add_argument("--restart-at-s", type=float, metavar="S", help="wall seconds to SIGTERM at (default: half-way)")
    p.add_argument("--model", default="sim-tiny", metavar="MODEL", help="the server's model (default: sim-tiny)")
    p.add_argument("--no-baseline", action="store_true", help="skip the run without a restart (default: run it)")
    p.add_argument("--json", dest="json_out", metavar="PATH", help="write the results here (default: print only)")
    p.set_defaults(func=_bench_restart)

    p = bench_sub.add_parser(
        "store",
        help="event write cost: the store's writer thread vs committing on the loop",
        description="The event store's writer thread (group commit) against committing each event on the event "
        "loop, both on SQLite WAL with synchronous FULL and NORMAL: loop time per append, append-to-durable "
        "latency, burst throughput, the loop's longest stall.",
        epilog="example:\n  petstream bench store --json bench/results/store.json",
    )
    p.add_argument("--events", type=int, default=300, metavar="N", help="events written one at a time (default: 300)")
    p.add_argument("--burst", type=int, default=2000, metavar="N", help="events written at once (default: 2000)")
    p.add_argument("--json", dest="json_out", metavar="PATH", help="write the results here (default: print only)")
    p.set_defaults(func=_bench_store)

    soak = sub.add_parser(
        "soak",
        help="cameras connect, stream and leave at random; server RSS/fds/tasks/threads over time",
        description="Simulated cameras connect, stream and disconnect (cleanly or by vanishing) at random against "
        "a server process; its RSS, open file descriptors, threads and asyncio tasks are sampled over time and "
        "written as JSON and a PNG. Checks: RSS growth over the churn (runs of 5 minutes or more), and file "
        "descriptors, threads and tasks back to their baseline once the cameras left.",
        epilog="example:\n  petstream soak --cameras 50 --minutes 30 --json bench/results/soak.json",
    )
    soak.add_argument("--cameras", type=int, default=50, metavar="N", help="simulated cameras churning (default: 50)")
    soak.add_argument("--minutes", type=float, default=30.0, metavar="MIN", help="length of the churn (default: 30)")
    soak.add_argument("--model", default="sim-tiny", metavar="MODEL", help="the server's model (default: sim-tiny)")
    soak.add_argument("--sample-s", type=float, default=5.0, metavar="S", help="seconds between samples (default: 5)")
    soak.add_argument("--seed", type=int, default=1, metavar="N", help="seed of the scripts and churn (default: 1)")
    soak.add_argument(
        "--json",
        dest="json_out",
        default="bench/results/soak.json",
        metavar="PATH",
        help="JSON out (default: bench/results/soak.json)",
    )
    soak.add_argument("--png", dest="png_out", metavar="PATH", help="the plot (default: the JSON path with .png)")
    soak.set_defaults(func=_soak)

    register_loadtest(sub)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected non-negative integers like 1,2,4")
    return values


def register_loadtest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loadtest",
        help="server settings x client concurrency -> latency/throughput per cell, the knee; CSV, JSON, PNG",
        description="The stress test that sizes a fleet: a matrix of server settings (model threads x max batch "
        "size; a `petstream serve` is started per setting, or --target) x client concurrency (live simulated "
        "cameras streaming real-time H.264, concurrent Ask callers). Each cell warms up, then measures a window; "
        "writes loadtest.csv, loadtest.json (with the knee) and loadtest.png into --out. --compare-naive measures "
        "cameras per machine against a generate()-per-question baseline server instead.",
        epilog="examples:\n  petstream loadtest --quick --out /tmp/lt\n"
        "  petstream loadtest --model blip-base-random --sample-fps 0.5 --cameras 1,2,4,8 --p99-budget 3000\n"
        "  petstream loadtest --compare-naive --out bench/results/compare_naive_defaults",
    )
    p.add_argument(
        "--out", default="bench/results/loadtest", metavar="DIR", help="folder for the results (default: %(default)s)"
    )
    p.add_argument(
        "--quick", action="store_true", help="a small matrix that finishes in under 3 minutes here (default: off)"
    )
    p.add_argument(
        "--target", metavar="HOST:PORT", help="host:port of a running server instead of starting one per setting"
    )
    p.add_argument(
        "--target-metrics", metavar="URL", help="its /metrics URL, for server-side drop counts (default: none)"
    )
    p.add_argument("--model", metavar="MODEL", help="model each started server serves (default: sim-tiny)")
    p.add_argument("--threads", type=_ints, metavar="N,N", help="model threads per setting, e.g. 1,2 (default: 1,2)")
    p.add_argument(
        "--max-batch", type=_ints, metavar="N,N", help="max batch sizes per setting, e.g. 1,8 (default: 1,8)"
    )
    p.add_argument("--cameras", type=_ints, metavar="N,N", help="live cameras per cell, e.g. 1,2,4,8,16,32 (default)")
    p.add_argument("--asks", type=_ints, metavar="N,N", help="concurrent Ask callers per cell, e.g. 0,2 (default)")
    p.add_argument(
        "--sample-fps",
        type=float,
        metavar="FPS",
        help="frames/s each camera asks to be looked at (default: 1; --compare-naive: 0.2)",
    )
    p.add_argument(
        "--sampling",
        choices=["rate", "keyframes", "motion", "compressed"],
        help="cameras' policy (default: the server's)",
    )
    p.add_argument("--warmup-s", type=float, metavar="SECONDS", help="seconds before each cell's window (default: 5)")
    p.add_argument("--window-s", type=float, metavar="SECONDS", help="seconds measured per cell (default: 20)")
    p.add_argument(
        "--p99-budget",
        type=float,
        dest="p99_budget_ms",
        metavar="MS",
        help="p99 frame->event budget, ms (default: 1000; with --compare-naive 8000)",
    )
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra `petstream serve` flag (repeatable; default: none), e.g. --serve-arg=--dtype --serve-arg=int8",
    )
    p.add_argument(
        "--compare-naive",
        action="store_true",
        help="cameras per machine against the generate() "
        "baseline server, full-size model, 85 %% still scripts, same sample rate (default: off)",
    )
    p.set_defaults(func=_loadtest)


def _loadtest(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    out = Path(args.out)
    if args.compare_naive:
        from bench.compare_naive import CompareParams, run_compare, summary_lines, with_overrides

        params = with_overrides(
            CompareParams(),
            model=args.model,
            sample_fps=args.sample_fps,
            p99_budget_ms=args.p99_budget_ms,
            cameras=args.cameras,
            warmup_s=args.warmup_s,
            window_s=args.window_s,
            serve_args=tuple(args.serve_arg) or None,
        )
        result = run_compare(params, out, log=lambda s: print(s, flush=True))
        print("\n".join(summary_lines(result)))
        print(f"wrote {out / 'compare_naive.json'}")
        return 0
    from bench.loadtest import LoadParams, run_loadtest
    from bench.loadtest import with_overrides as load_overrides

    base = LoadParams.quick() if args.quick else LoadParams()
    p = load_overrides(
        base,
        model=args.model,
        threads=args.threads,
        max_batch=args.max_batch,
        cameras=args.cameras,
        asks=args.asks,
        sample_fps=args.sample_fps,
        sampling=args.sampling,
        warmup_s=args.warmup_s,
        window_s=args.window_s,
        p99_budget_ms=args.p99_budget_ms,
        extra_serve_args=tuple(args.serve_arg) or None,
    )
    result = run_loadtest(p, out, target=args.target, target_metrics=args.target_metrics)
    print(f"{'setting':<28} {'cams':>4} {'asks':>4} {'p50':>8} {'p95':>8} {'p99':>8} {'scored/s':>8} {'drop':>4}  ok")
    for r in result["cells"]:
        if r["skipped"]:
            continue
        print(
            f"{r['setting']:<28} {r['cameras']:>4} {r['asks']:>4} {r['p50_ms'] or '-':>8} {r['p95_ms'] or '-':>8} "
            f"{r['p99_ms'] or '-':>8} {r['scored_fps']:>8} {r['dropped']:>4}  {r['sustained']}"
        )
    print("knee:", json.dumps(result["knee"]))
    print(f"wrote {out}/loadtest.csv, loadtest.json, loadtest.png ({result['elapsed_s']:.0f} s)")
    return 0


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
        peers=args.peers,
        frame_source=args.frames_from,
        print_fn=lambda s: print(s, flush=True),
    )
    return 0


def _bench_ask(args: argparse.Namespace) -> int:
    from bench.ask import run_ask_bench

    if args.images < 1:
        raise SystemExit(f"--images {args.images}: must be at least 1")
    run_ask_bench(
        args.model,
        images=args.images,
        server_args=tuple(args.server_arg),
        json_out=args.json_out,
        print_fn=lambda s: print(s, flush=True),
    )
    return 0


def _bench_pipeline(args: argparse.Namespace) -> int:
    if args.pinned:
        from bench.pinned import main as pinned_main

        return pinned_main(args.json, args.quick)
    from bench.pipeline import main

    return main(args.json, args.quick)


def _bench_scaleout(args: argparse.Namespace) -> int:
    from bench.scaleout import main

    return main(args.json, args.quick)


def _bench_restart(args: argparse.Namespace) -> int:
    from bench.restart import run

    result = run(
        cameras=args.cameras,
        seconds=args.seconds,
        speed=args.speed,
        restart_at_s=args.restart_at_s,
        model=args.model,
        baseline=not args.no_baseline,
        json_out=args.json_out,
    )
    r = result["restart"]
    ok = r["duplicates"] == 0 and r["unpaired"] == 0 and r["split_truth_episodes"] == 0 and not r["cameras_failed"]
    return 0 if ok else 1


def _bench_store(args: argparse.Namespace) -> int:
    from bench.store import main

    return main(args.json_out, args.events, args.burst)


def _soak(args: argparse.Namespace) -> int:
    from bench.soak import main

    if args.cameras < 1 or args.minutes <= 0 or args.sample_s <= 0:
        raise SystemExit("--cameras must be >= 1, --minutes and --sample-s > 0")
    return main(
        cameras=args.cameras,
        minutes=args.minutes,
        model=args.model,
        sample_s=args.sample_s,
        seed=args.seed,
        json_out=args.json_out,
        png_out=args.png_out,
    )
