"""Run folders (``version_N``), the newest ``last.ckpt``, and atomic checkpoint writes."""

from __future__ import annotations

import os
import time

import pytest
import torch

from samlab.runs import AtomicCheckpointIO, newest_last_checkpoint, next_version, run_folder_of, run_versions


def _last(root, version: int):
    path = root / f"version_{version}" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    return path


def test_versions_next_version_and_newest_last_checkpoint(tmp_path):
    assert next_version([tmp_path / "missing"]) == 0 and newest_last_checkpoint(tmp_path) is None
    (tmp_path / "a" / "version_2").mkdir(parents=True)
    (tmp_path / "a" / "version_x").mkdir()
    (tmp_path / "b" / "version_5").mkdir(parents=True)
    assert sorted(run_versions(tmp_path / "a")) == [2]
    assert next_version([tmp_path / "a", tmp_path / "b"]) == 6
    old, new = _last(tmp_path / "r", 7), _last(tmp_path / "r", 1)
    os.utime(old, ns=(time.time_ns() - 10**9, time.time_ns() - 10**9))
    assert newest_last_checkpoint(tmp_path / "r") == new  # the one written last, not the highest version
    assert run_folder_of(old, tmp_path / "r") == (tmp_path / "r" / "version_7").resolve()
    assert run_folder_of(old, tmp_path / "other") is None
    assert run_folder_of(tmp_path / "loose.ckpt", tmp_path) is None


def test_atomic_checkpoint_io_replaces_whole_files_only(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)
    io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 2

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("interrupted while writing")

    with pytest.raises(RuntimeError, match="interrupted while writing"):
        io.save_checkpoint({"global_step": 3, "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 2  # the previous checkpoint is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no partial file left
