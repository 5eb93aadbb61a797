"""Shared fixtures of the evaluator tests."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def eval_tool(load_tool):
    """``tools/eval.py`` loaded as a module (for its ``main(argv)``)."""
    return load_tool("eval")
