"""BLIP VQA inference: staged model, compiled artifacts, hardware backends and the batch engine."""
