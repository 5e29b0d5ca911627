"""The load-test chart: latency percentiles and scored frames/s against load, one line per server setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(result: dict[str, Any], path: Path) -> None:
    """Left: p50/p95/p99 frame -> event latency against cameras (no Ask callers), the budget and the knee.
    Middle: scored frames/s against cameras. Right: the same cells with Ask callers (their p99)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = result["p99_budget_ms"]
    fig, (ax_lat, ax_fps, ax_ask) = plt.subplots(1, 3, figsize=(16, 5), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = list(dict.fromkeys(r["setting"] for r in result["cells"]))
    for i, label in enumerate(labels):
        color = colors[i % len(colors)]
        rows = sorted(
            (r for r in result["cells"] if r["setting"] == label and not r["skipped"] and r["asks"] == 0),
            key=lambda r: r["cameras"],
        )
        x = [r["cameras"] for r in rows]
        for q, style in (("p50", ":"), ("p95", "--"), ("p99", "-")):
            ax_lat.plot(
                x,
                [r[f"{q}_ms"] for r in rows],
                style,
                color=color,
                marker="o",
                ms=3,
                label=f"{label} {q}" if q == "p99" else None,
            )
        ax_fps.plot(x, [r["scored_fps"] for r in rows], "-o", color=color, ms=3, label=label)
        ax_fps.plot(x, [r["offered_fps"] for r in rows], ":", color="grey")
        for a in sorted({r["asks"] for r in result["cells"] if r["asks"]}):
            ask_rows = sorted(
                (r for r in result["cells"] if r["setting"] == label and not r["skipped"] and r["asks"] == a),
                key=lambda r: r["cameras"],
            )
            ax_ask.plot(
                [r["cameras"] for r in ask_rows],
                [r["p99_ms"] for r in ask_rows],
                "-o",
                color=color,
                ms=3,
                label=f"{label}, {a} Ask callers: frame p99",
            )
            ax_ask.plot(
                [r["cameras"] for r in ask_rows],
                [r["ask_p99_ms"] for r in ask_rows],
                "--x",
                color=color,
                ms=4,
                label=f"{label}, {a} Ask callers: Ask p99",
            )
        dropped = [r for r in rows if not r["sustained"]]
        ax_lat.plot([r["cameras"] for r in dropped], [r["p99_ms"] for r in dropped], "x", color="red", ms=8)
    for ax in (ax_lat, ax_ask):
        ax.axhline(budget, color="red", lw=1, alpha=0.6)
        ax.text(ax.get_xlim()[0], budget, f" p99 budget {budget:g} ms", color="red", va="bottom", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("frame -> event latency (ms)")
    knee = result["knee"]
    if knee["cameras"]:
        ax_lat.axvline(knee["cameras"], color="green", lw=1, alpha=0.6)
        ax_lat.text(
            knee["cameras"],
            budget * 1.1,
            f"knee: {knee['cameras']} cameras\n({knee['setting']}) ",
            color="green",
            va="bottom",
            ha="right",
            fontsize=8,
        )
    ax_lat.set_title("frame -> event latency against load", fontsize=10)
    ax_lat.text(
        0.01,
        0.01,
        "p50 dotted, p95 dashed, p99 solid; red x: not sustained",
        transform=ax_lat.transAxes,
        fontsize=7,
        color="grey",
    )
    ax_fps.set_title("scored frames/s (grey: offered)")
    ax_ask.set_title("with concurrent Ask callers")
    ax_fps.set_ylabel("frames/s")
    for ax in (ax_lat, ax_fps, ax_ask):
        ax.set_xlabel("live cameras")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    params = result["params"]
    fig.suptitle(
        f"petstream loadtest: model {params['model']}, {params['sample_fps']:g} sampled frame/s per camera, "
        f"{params['width']}x{params['height']} H.264 real time, window {params['window_s']:g} s after "
        f"{params['warmup_s']:g} s warm-up",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
