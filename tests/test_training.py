"""Smoke test of train-sim: a few steps of every stage, a loadable folder and a training card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulators.timeline import BEHAVIORS


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from training.run import train_sim

    out = tmp_path_factory.mktemp("sim-tiny")
    facts = train_sim(
        out,
        eval_frames=0,
        pool_frames=64,
        batch=16,
        teacher_steps=2,
        distill_steps=2,
        text_steps=2,
        text_batch=16,
        vqa_steps=1,
        workers=1,
        embed_passes=1,
        val_frames=8,
    )
    return out, facts


def test_training_writes_a_stock_model_folder(tiny_run: tuple[Path, dict]) -> None:
    from transformers import BlipForQuestionAnswering, BlipProcessor

    out, facts = tiny_run
    model = BlipForQuestionAnswering.from_pretrained(out)
    processor = BlipProcessor.from_pretrained(out)
    tok = processor.tokenizer
    assert model.config.text_config.bos_token_id == tok.bos_token_id == tok.convert_tokens_to_ids("[DEC]")
    assert model.config.text_config.pad_token_id == tok.pad_token_id
    assert tok.convert_tokens_to_ids("yes") != tok.unk_token_id
    card = json.loads((out / "TRAINING_CARD.json").read_text())
    assert card["config"]["seed"] == 0 and card["parameters"] == facts["parameters"]
    assert "# sim-tiny training card" in (out / "TRAINING_CARD.md").read_text()


def test_pool_is_deterministic_and_independent_of_workers() -> None:
    from training.data import make_pool

    a = make_pool(12, seed=3, image_size=32, workers=1)
    b = make_pool(12, seed=3, image_size=32, workers=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape == (12, 32, 32, 3) and a[1].shape == (12, len(BEHAVIORS))


def test_h264_roundtrip_keeps_frames() -> None:
    from training.evaluate import fresh_frames, h264_roundtrip

    frames, labels = fresh_frames(4, seed=1, size=(160, 96))
    back = h264_roundtrip(frames)
    assert len(back) == 4 and back[0].shape == frames[0].shape and labels.shape == (4, 3)
    assert float(np.abs(back[0].astype(int) - frames[0].astype(int)).mean()) < 20


def test_cli_registers_train_sim_without_torch() -> None:
    import argparse
    import subprocess
    import sys

    import training.cli

    parser = argparse.ArgumentParser()
    training.cli.register(parser.add_subparsers())
    args = parser.parse_args(["train-sim", "--seed", "4", "--steps", "1", "2", "3", "4"])
    assert args.seed == 4 and args.steps == [1, 2, 3, 4]
    code = "import sys, training.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
