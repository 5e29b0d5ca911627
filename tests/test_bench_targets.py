"""Benchmark targets: met by the bound's direction, unknown (None) when the value or the bound was not measured."""

import pytest

from bench.targets import latency_targets, target


def test_a_target_is_met_by_the_direction_of_its_bound():
    assert target(0.9, ">=", 0.85) == {"value": 0.9, "target": ">= 0.85", "met": True}
    assert target(0.8, ">=", 0.85)["met"] is False
    assert target(120, "<=", 100)["met"] is False
    assert target(100, "<=", 100)["met"] is True


def test_an_unmeasured_value_or_bound_is_neither_met_nor_missed():
    assert target(None, ">=", 1)["met"] is None
    assert target(3, "<=", None)["met"] is None
    with pytest.raises(ValueError, match="unknown comparison '<'"):
        target(1, "<", 2)


def test_latency_targets_compare_the_p99_with_each_budget():
    pipe = {
        "p99_frame_to_event_ms": 900,
        "p99_target_ms": 1000,
        "p99_target_in_server_ms": 800,
        "p99_beyond_own_batch_ms": 40,
    }
    t = latency_targets(pipe)
    assert t["p99_frame_to_event_ms"]["met"] is True
    assert t["p99_frame_to_event_ms_vs_in_server_service"]["met"] is False
    assert t["p99_wait_beyond_own_batch_ms"] == {"value": 40, "target": "<= None", "met": None}
