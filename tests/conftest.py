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


@pytest.fixture
def deterministic_torch():
    """Run the test with ``torch.use_deterministic_algorithms(True)`` (restored after): the training proofs."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


# What Lightning's DDP strategies write into os.environ (and what a launched rank reads back: with LOCAL_RANK set, a
# new `ddp` run believes its processes were created externally and waits for ranks that never start).
DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "RANK", "GROUP_RANK", "WORLD_SIZE")
DISTRIBUTED_ENV += ("LOCAL_WORLD_SIZE", "PL_TRAINER_GPUS")


@pytest.fixture(autouse=True)
def isolated_distributed_state():
    """Each test starts and ends without a process group and without the distributed variables of an earlier test
    (a DDP run in this process keeps its TCPStore port bound until the group is destroyed)."""
    import os
    import sys

    before = {key: os.environ.get(key) for key in DISTRIBUTED_ENV}
    yield
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
