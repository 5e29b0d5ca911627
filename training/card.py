"""The training card of a trained model: the recipe, run facts and accuracy, as TRAINING_CARD.json and .md."""

from __future__ import annotations

import json
from pathlib import Path

from simulators.timeline import BEHAVIORS

RECIPE = """\
1. Render `pool_frames` fully random scenes (`simulators.scenes.random_scene`) at camera sizes from 256x144
   to 1280x720, with codec-like artefacts (JPEG re-encoding at quality 20-90, sometimes blur), squashed to
   the model size with cv2.INTER_AREA as the server does. Every batch is augmented on the fly: shift
   (+-4 px), scale (0.9-1.1), horizontal flip, colour gain and offset, sensor noise.
2. Train a small CNN teacher (5 conv layers, feature map on the student's 8x8 patch grid) on the labels.
3. Train the BLIP vision encoder alone: its patch tokens regress the teacher's (layer-normed) feature map,
   and two throw-away heads predict the labels (true and the teacher's soft labels): one on the pooled
   [CLS] output, one on the mean and max of the patch tokens (like the teacher's head, so a small cue
   such as the ball gets its own gradient; without it "playing" stalled near 90 %).
4. Freeze the vision encoder, embed the pool (a clean and an augmented copy) once, and train the text
   encoder and decoder on those embeddings: cross-entropy of the decoder's first step after [DEC] over the
   vocabulary against "yes"/"no" for each of the three questions (each at its own length, no padding).
5. Optionally (`vqa_steps` > 0) fine-tune the whole BlipForQuestionAnswering on that loss plus 0.3 x the
   vision losses of step 3.
All stages: bf16 autocast, AdamW, warm-up then cosine decay, fixed seeds.
The teacher and the heads are not shipped; the saved folder is a stock `save_pretrained` model + processor.
"""


def write_card(out_dir: Path, facts: dict) -> None:
    """Write TRAINING_CARD.json (all facts) and TRAINING_CARD.md (readable summary) into out_dir."""
    (out_dir / "TRAINING_CARD.json").write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    lines = [
        "# sim-tiny training card",
        "",
        "A tiny stock `BlipForQuestionAnswering` trained from scratch on petstream's synthetic cartoon",
        "scenes (`simulators/scenes.py`). It answers the three default questions on those scenes only;",
        "real cameras need real weights. Reproduce with `petstream train-sim` (deterministic per seed).",
        "",
        f"- seed: {facts['config']['seed']}",
        f"- parameters: {facts['parameters']:,}",
        f"- steps: teacher {facts['config']['teacher_steps']}, vision distillation "
        f"{facts['config']['distill_steps']} (batch {facts['config']['batch']}), question/answer side "
        f"{facts['config']['text_steps']} (batch {facts['config']['text_batch']}), "
        f"whole model {facts['config']['vqa_steps']}",
        f"- run time: {facts['timings']['total_s']:.0f} s in all ({_timings(facts['timings'])})",
        f"- machine: {facts.get('machine', 'unknown')}",
        f"- library versions: {facts.get('versions', {})}",
        "",
        "## Recipe",
        "",
        RECIPE,
        "## Accuracy on fresh frames (a seed unseen in training)",
        "",
        "| evaluation | frames | " + " | ".join(BEHAVIORS) + " | confident p_yes (<0.1 or >0.9) |",
        "|---|---|" + "---|" * len(BEHAVIORS) + "---|",
    ]
    for name, result in facts.get("evaluation", {}).items():
        accs = " | ".join(f"{100 * result['accuracy'][b]:.1f} %" for b in BEHAVIORS)
        lines.append(f"| {name} | {result['frames']} | {accs} | {100 * result['confident_share']:.1f} % |")
    if facts.get("notes"):
        lines += ["", "## Notes", "", *facts["notes"]]
    lines += [
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(facts["config"], indent=2, sort_keys=True),
        "```",
        "",
    ]
    (out_dir / "TRAINING_CARD.md").write_text("\n".join(lines))


def _timings(t: dict[str, float]) -> str:
    return ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in t.items() if k != "total_s")
