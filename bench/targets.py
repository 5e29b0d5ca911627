"""Benchmark targets as the JSON records them: the value, the bound as text, and whether it was met."""

from __future__ import annotations

from typing import Any


def target(value: Any, op: str, bound: Any) -> dict[str, Any]:
    """`value` against `bound` (`op` is ">=" or "<="); met is None when either was not measured."""
    if op not in (">=", "<="):
        raise ValueError(f"unknown comparison {op!r}; allowed: ['>=', '<=']")
    met = None if value is None or bound is None else (value >= bound if op == ">=" else value <= bound)
    return {"value": value, "target": f"{op} {bound}", "met": met}


def latency_targets(pipe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pipeline benchmark's p99 frame -> event against its budget, against the batch time the server itself
    saw, and the waiting alone (frame -> event minus its own batch's model time) against max wait + 100 ms."""
    p99 = pipe.get("p99_frame_to_event_ms")
    return {
        "p99_frame_to_event_ms": target(p99, "<=", pipe.get("p99_target_ms")),
        "p99_frame_to_event_ms_vs_in_server_service": target(p99, "<=", pipe.get("p99_target_in_server_ms")),
        "p99_wait_beyond_own_batch_ms": target(
            pipe.get("p99_beyond_own_batch_ms"), "<=", pipe.get("p99_beyond_own_batch_target_ms")
        ),
    }
