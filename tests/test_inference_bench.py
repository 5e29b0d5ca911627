"""The inference benchmark end to end on the tiny model (structure of the JSON, not timings)."""

from __future__ import annotations

import json

from bench.inference import TORCH_SETTINGS, run_bench

SETTINGS = (*TORCH_SETTINGS, ("openvino-int8", "openvino", "int8", True))


def test_bench_writes_required_fields(tmp_path):
    out = tmp_path / "bench.json"
    lines: list[str] = []
    result = run_bench("tiny", frames=2, questions=3, json_out=str(out), settings=SETTINGS, print_fn=lines.append)
    saved = json.loads(out.read_text())
    assert saved["best_setting"] == result["best_setting"]
    for key in (
        "baseline_frames_per_s",
        "petstream_fp32_frames_per_s",
        "petstream_best_frames_per_s",
        "speedup_fp32",
        "speedup_best",
        "best_setting",
        "max_abs_p_yes_diff_fp32",
        "max_abs_p_yes_diff_best",
        "machine",
    ):
        assert key in saved, key
    assert saved["max_abs_p_yes_diff_fp32"] <= 1e-5
    assert {r["setting"] for r in saved["settings"]} == {label for label, _, _, _ in SETTINGS}
    assert {p["peer"] for p in saved["peers"]} == {"onnxruntime-fp32", "onnxruntime-int8", "openvino-default"}
    for row in (*saved["settings"], *saved["peers"]):
        assert 0 <= row["max_abs_p_yes_diff"] < 1, row
    ov = next(r for r in saved["settings"] if r["setting"] == "openvino-int8")
    assert ov["compiled_calls"]["vision"] == {"compiled": 3 + 2, "eager": 0}  # warm-up + measured frames
    assert {"vision", "text_decoder"} <= set(ov["stage_ms_median"])
    assert {"vision_at_least_as_fast_as_peers", "whole_frame_12x", "fidelity"} <= set(saved["done_when"])
    compiled = next(r for r in saved["settings"] if r["setting"] == "fp32+compiled")
    assert compiled["compiled_calls"]["vision"]["eager"] == 0
    assert {"stock_per_question_ms", "shared_total_ms"} <= set(saved["kv_sharing"])
    assert any(line.startswith("HF generate") for line in lines)
