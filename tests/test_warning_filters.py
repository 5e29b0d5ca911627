"""Test output stays honest: the project's own warnings are errors, known third-party deprecations are filtered by
name, anything else still shows (pyproject.toml [tool.pytest.ini_options] filterwarnings)."""

from __future__ import annotations

import warnings

import pytest


@pytest.mark.parametrize("module", ["ingest.session", "streaming", "inference.compile", "simulators.clip", "bench"])
def test_a_warning_from_the_project_fails_the_test(module):
    with pytest.raises(UserWarning, match="from the project"):
        warnings.warn_explicit("from the project", UserWarning, f"{module.replace('.', '/')}.py", 1, module=module)


def test_known_third_party_deprecations_are_silenced_and_others_still_show():
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn_explicit(
            "`torch.jit.trace` is deprecated. Please switch to `torch.compile` or `torch.export`.",
            DeprecationWarning,
            "torch/jit/_trace.py",
            1006,
            module="torch.jit._trace",
        )
        warnings.warn_explicit("something new", UserWarning, "somelib/x.py", 1, module="somelib.x")
        warnings.warn_explicit("not ours", UserWarning, "ingestion/x.py", 1, module="ingestion.x")
    assert [str(w.message) for w in seen] == ["something new", "not ours"]
