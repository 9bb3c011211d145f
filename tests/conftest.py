"""Tiny datasets in the real on-disk layouts, synthesized once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from samlab.data.synth import synthesize

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth")


@pytest.fixture(scope="session")
def mose_root(synth_root: Path) -> Path:
    out = synth_root / "mose"
    synthesize("mose", out, videos=3, frames=8, size=(48, 64), seed=0, objects=3)
    return out


@pytest.fixture(scope="session")
def sav_root(synth_root: Path) -> Path:
    out = synth_root / "sav"
    synthesize("sav", out, videos=2, frames=5, size=(48, 64), seed=1, objects=2)
    return out


@pytest.fixture(scope="session")
def sav_val_root(synth_root: Path) -> Path:
    out = synth_root / "sav_val"
    synthesize("sav", out, videos=2, frames=5, size=(48, 64), seed=2, objects=2, layout="val")
    return out


@pytest.fixture(scope="session")
def sa1b_root(synth_root: Path) -> Path:
    out = synth_root / "sa1b"
    synthesize("sa1b", out, videos=4, size=(48, 64), seed=3, objects=3)
    return out


@pytest.fixture(scope="session")
def coco_root(synth_root: Path) -> Path:
    out = synth_root / "coco"
    synthesize("coco", out, videos=4, size=(48, 64), seed=4, objects=3)
    return out


@pytest.fixture
def one_torch_thread():
    """Run the test on one torch thread (restored after): tiny models run fastest so, and on a shared CPU several
    threads mostly wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
