"""Typed values and the abstract engine interface shared by the inference layer and its callers."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Question:
    """One yes/no question watched for a behavior, e.g. ("barking", "is the dog barking?")."""

    name: str
    text: str

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("Question.name must be non-empty")
        if not self.text.strip():
            raise ValueError(f"Question {self.name!r}: text must be non-empty")


DEFAULT_QUESTIONS: tuple[Question, ...] = (
    Question("barking", "is the dog barking?"),
    Question("playing", "is the dog playing?"),
    Question("chewing_furniture", "is the dog chewing furniture?"),
)


@dataclass(frozen=True, repr=False)
class VQARequest:
    """One frame (RGB uint8, HxWx3, any size) and the questions to ask about it."""

    key: object  # opaque to the engine, handed back in the result
    image: np.ndarray
    questions: tuple[Question, ...]

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"VQARequest.image must be HxWx3 uint8 RGB, got shape {self.image.shape} dtype {self.image.dtype}"
            )
        if not self.questions:
            raise ValueError("VQARequest.questions must not be empty")

    def __repr__(self) -> str:
        names = [q.name for q in self.questions]
        return f"VQARequest(key={self.key!r}, image={self.image.shape}, questions={names})"


@dataclass(frozen=True)
class StageTimings:
    """Seconds spent per stage for one batch (shared by every result of that batch)."""

    preprocess_s: float = 0.0
    vision_s: float = 0.0
    text_s: float = 0.0
    decode_s: float = 0.0
    batch_size: int = 0
    padded_batch_size: int = 0


@dataclass(frozen=True)
class VQAResult:
    """Yes-probabilities for every question of one request, keyed by question name."""

    key: object
    p_yes: Mapping[str, float]
    timings: StageTimings = field(default_factory=StageTimings)
    pool: str = ""  # the backend pool that answered (set by the router; "" for an engine used directly)


class Engine(abc.ABC):
    """Runs batches of VQA requests. One caller at a time; blocking; runs off the event loop."""

    #: human-readable model id (hub id, folder or registry name)
    model_name: str = ""
    #: square input size in pixels the model expects; callers may pre-scale frames to it
    image_size: int = 384
    #: batch sizes the engine runs without padding waste (compiled buckets); callers may batch to them
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8)
    #: batches the engine takes at once (a remote tier with several replicas: more than one)
    max_inflight: int = 1

    @abc.abstractmethod
    def run(self, requests: Sequence[VQARequest]) -> list[VQAResult]:
        """Return one result per request, in the same order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""
