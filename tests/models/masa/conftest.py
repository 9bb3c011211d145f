"""MASA test settings: one torch thread (tiny convolutions on a shared CPU are many times faster without threads)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _tiny_masa_on_one_thread(one_torch_thread):
    """Every MASA test runs on one torch thread (see ``one_torch_thread`` in tests/conftest.py)."""
