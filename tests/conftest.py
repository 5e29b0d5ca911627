"""Shared fixtures: the real tiny BLIP engine, loaded once per test session."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def tiny_engine():
    from inference.engine import load_engine

    engine = load_engine("tiny", dtype="fp32")
    yield engine
    engine.close()
