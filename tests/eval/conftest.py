"""Shared fixtures of the evaluator tests."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def eval_tool():
    """``tools/eval.py`` loaded as a module (for its ``main(argv)``)."""
    spec = importlib.util.spec_from_file_location("tools_eval_under_test", ROOT / "tools" / "eval.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
