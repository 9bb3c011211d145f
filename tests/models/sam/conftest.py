import pytest


@pytest.fixture(autouse=True)
def _tiny_sam_on_one_thread(one_torch_thread):
    """Every SAM test runs on one torch thread (see ``one_torch_thread`` in tests/conftest.py)."""
