"""Progress bars for long commands: shown on a terminal only, silent in pipes, files and CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def enabled(stream: Any = None) -> bool:
    """True when a person is watching: stderr is a terminal and this is not a CI run (CI=true) nor NO_PROGRESS."""
    stream = sys.stderr if stream is None else stream
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get("NO_PROGRESS"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def bar(iterable: Iterable[T] | None = None, *, total: float | None = None, desc: str = "", unit: str = "it") -> Any:
    """A tqdm bar on stderr, or a no-op stand-in with the same update/set_postfix_str/close methods."""
    if not enabled():
        return _Quiet(iterable)
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr)


class _Quiet:
    def __init__(self, iterable: Iterable[Any] | None) -> None:
        self._it = iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self._it or ())

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: float = 1) -> None:
        return None

    def set_postfix_str(self, s: str) -> None:
        return None

    def set_description_str(self, s: str) -> None:
        return None

    def write(self, s: str) -> None:
        print(s, file=sys.stderr)

    def close(self) -> None:
        return None
