"""`petstream serve`: registered by the ingest layer."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # filled in below
    pass
