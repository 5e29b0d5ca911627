"""Shared fixtures: the real tiny BLIP engine, loaded once per test session."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
# Servers the tests start as processes keep their event stores in a scratch folder, not the user's
# ~/.local/state (in-process servers get one each: factories.serving)
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="petstream-tests-state-")
atexit.register(shutil.rmtree, os.environ["XDG_STATE_HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_engine():
    from inference.engine import load_engine

    engine = load_engine("tiny", dtype="fp32")
    yield engine
    engine.close()
