"""extract_frames(): SA-V .mp4 files (nested in shard folders) to numbered JPEG frames."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from samlab.data.synth import synthesize
from samlab.errors import DataError
from samlab.tools.frames import extract_frames


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    synth = tmp_path / "synth"
    synthesize("sav", synth, videos=2, frames=3, size=(32, 48), seed=6, objects=2)
    shards = tmp_path / "sav_train"
    for i, mp4 in enumerate(sorted(synth.glob("*.mp4"))):
        (shards / f"sav_00{i}").mkdir(parents=True)
        shutil.copy(mp4, shards / f"sav_00{i}" / mp4.name)
    return tmp_path


def test_extracts_every_frame_close_to_the_source(videos: Path) -> None:
    out = videos / "frames"
    assert extract_frames(videos / "sav_train", out) == {"videos": 2, "frames": 18, "skipped": 0}
    for name in ("sav_000001", "sav_000002"):
        extracted = sorted(p.name for p in (out / name).iterdir())
        assert extracted == [f"{i:05d}.jpg" for i in range(9)]
        for i in (0, 4, 8):
            got = cv2.imread(str(out / name / f"{i:05d}.jpg")).astype(float)
            source = cv2.imread(str(videos / "synth" / name / f"{i:05d}.jpg")).astype(float)
            assert got.shape == source.shape
            assert np.abs(got - source).mean() < 6  # H.264 + JPEG tolerance
    assert not list(out.glob(".*"))  # no temporary folder left


def test_skips_complete_videos_unless_overwrite(videos: Path) -> None:
    out = videos / "frames"
    extract_frames(videos / "sav_train", out)
    (out / "sav_000002" / "00008.jpg").unlink()  # incomplete: extracted again
    marker = out / "sav_000001" / "00000.jpg"
    marker.write_bytes(b"kept")
    assert extract_frames(videos / "sav_train", out) == {"videos": 2, "frames": 18, "skipped": 1}
    assert marker.read_bytes() == b"kept"
    assert extract_frames(videos / "sav_train", out, overwrite=True, quality=50)["skipped"] == 0
    assert marker.read_bytes() != b"kept"


def test_broken_and_duplicate_videos_are_named(videos: Path) -> None:
    broken = videos / "sav_train" / "sav_001" / "sav_999999.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(DataError) as err:
        extract_frames(videos / "sav_train", videos / "frames")
    assert err.value.path == str(broken)
    assert not (videos / "frames" / "sav_999999").exists()
    broken.unlink()
    duplicate = videos / "sav_train" / "sav_001" / "sav_000001.mp4"
    shutil.copy(videos / "sav_train" / "sav_000" / "sav_000001.mp4", duplicate)
    with pytest.raises(DataError, match="same name") as err:
        extract_frames(videos / "sav_train", videos / "frames")
    assert err.value.path == str(duplicate)
    with pytest.raises(DataError, match="missing"):
        extract_frames(videos / "nowhere", videos / "frames")
