"""`petstream train-sim`: train the shipped sim-tiny model from scratch on generated scenes."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "inference" / "assets" / "sim-tiny"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-sim",
        help="train the sim-tiny BLIP VQA model on synthetic scenes (deterministic)",
        description="Train the shipped sim-tiny model from scratch on the simulator's cartoon scenes; the same "
        "seed gives the same weights.",
        epilog="example:\n  petstream train-sim --out /tmp/sim-tiny --eval-frames 300",
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, metavar="PATH", help="model folder to write (default: the shipped one)"
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of data, initialisation and batches")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train (shipped model: cpu)")
    p.add_argument(
        "--pool-frames", type=int, default=None, metavar="N", help="training frames rendered once (default: recipe)"
    )
    p.add_argument(
        "--steps",
        type=int,
        nargs=4,
        metavar=("TEACHER", "DISTILL", "TEXT", "VQA"),
        default=None,
        help="steps per stage (default: recipe)",
    )
    p.add_argument(
        "--workers", type=int, default=2, metavar="N", help="frame rendering processes (does not change the result)"
    )
    p.add_argument(
        "--eval-frames", type=int, default=300, metavar="N", help="fresh frames per evaluation (0 skips evaluation)"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from training.run import train_sim

    overrides: dict[str, object] = {"seed": args.seed, "device": args.device, "workers": args.workers}
    if args.pool_frames is not None:
        overrides["pool_frames"] = args.pool_frames
    if args.steps is not None:
        overrides.update(zip(("teacher_steps", "distill_steps", "text_steps", "vqa_steps"), args.steps, strict=True))
    facts = train_sim(args.out, eval_frames=args.eval_frames, **overrides)
    for name, result in facts.get("evaluation", {}).items():
        accs = ", ".join(f"{b} {100 * a:.1f} %" for b, a in result["accuracy"].items())
        print(f"{name}: {accs}; confident {100 * result['confident_share']:.1f} %")
    print(f"wrote {args.out} in {facts['timings']['total_s']:.0f} s")
    return 0
