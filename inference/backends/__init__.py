"""Hardware backends as plugins: cpu, cuda and neuron behind one abstract class and a registry."""

from inference.backends.base import (
    BACKEND_NAMES,
    Backend,
    BackendUnavailable,
    available_backends,
    get_backend,
)

__all__ = ["BACKEND_NAMES", "Backend", "BackendUnavailable", "available_backends", "get_backend"]
