"""The catalog tests reuse the hand-made clean partitions of tests/features/conftest.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "midas_tests_clean_data", Path(__file__).resolve().parent.parent / "features" / "conftest.py")
_clean_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_clean_data)


@pytest.fixture
def clean():
    return _clean_data.CleanData
