"""Streaming core: frame sampling, the cross-camera batcher, backpressure and the event lifecycle."""
