"""SAVReader on SA-V folders in their real layouts, on Meta's example annotation file, and on broken input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samlab.data.formats.sav import SAVReader, SAVVideo
from samlab.data.sampling import ClipSpec, load_clip
from samlab.data.synth import synthesize
from samlab.errors import DataError
from samlab.masks import decode_rle, encode_rle

EXAMPLE = Path(__file__).resolve().parents[3] / "../shared/data/sav_example"


def _example() -> Path:
    if not (EXAMPLE / "sav_000001_manual.json").is_file():
        pytest.skip("SA-V example annotations (shared/data/sav_example) are not available")
    return EXAMPLE


@pytest.fixture
def sav_train(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    summary = synthesize("sav", tmp_path / "sav", videos=2, frames=4, size=(24, 32), seed=3, objects=2)
    return tmp_path / "sav", summary


def test_train_layout_counts_indices_and_masks(sav_train: tuple[Path, dict[str, int]]) -> None:
    root, summary = sav_train
    reader = SAVReader(root)
    assert reader.names == ["sav_000001", "sav_000002"]
    masks_seen = 0
    for video in reader:
        written = json.loads((root / f"{video.name}_manual.json").read_text())["masklet"]
        assert (video.num_frames, video.total_frames) == (4, 13)
        assert [video.frame_index(k) for k in range(4)] == [0, 4, 8, 12]
        assert video.frame_path(2) == root / video.name / "00008.jpg"
        for k in range(4):
            expected = np.stack([decode_rle(rle) for rle in written[k]])
            np.testing.assert_array_equal(video.masks(k).decode([0, 1]), expected)
            masks_seen += len(video.masks(k).ids())
    assert masks_seen == summary["masks"]
    assert reader[0].masks(0).ids() == [0, 1]
    clip = load_clip(reader[1], ClipSpec(frames=[1, 2], object_ids=[0, 1]))
    assert clip.frame_indices == [4, 8] and clip.masks.shape == (2, 2, 24, 32)


def test_video_is_cached_and_json_root_and_file_list(sav_train: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    root, _ = sav_train
    json_root = tmp_path / "json"
    json_root.mkdir()
    for path in root.glob("*_manual.json"):
        shutil.move(path, json_root / path.name)
    listing = tmp_path / "train.txt"
    listing.write_text("sav_000002\n")
    reader = SAVReader(root, json_root=json_root, file_list=listing)
    assert reader.names == ["sav_000002"]
    assert reader[0] is reader[0]  # the parsed JSON is kept between accesses
    assert reader[0].num_frames == 4


def test_include_auto_numbers_auto_masklets_after_manual(sav_train: tuple[Path, dict[str, int]]) -> None:
    root, _ = sav_train
    manual = json.loads((root / "sav_000001_manual.json").read_text())
    auto_mask = np.zeros((24, 32), dtype=bool)
    auto_mask[3:9, 4:20] = True
    auto = dict(manual, masklet=[[encode_rle(auto_mask)] for _ in manual["masklet"]], masklet_num=1)
    (root / "sav_000001_auto.json").write_text(json.dumps(auto))
    with_auto = SAVReader(root, include_auto=True)
    assert with_auto[0].masks(2).ids()[-1] == 2
    np.testing.assert_array_equal(with_auto[0].masks(2).decode([2])[0], auto_mask)
    assert 2 not in SAVReader(root)[0].masks(2).ids()
    assert with_auto[1].masks(0).ids() == [0, 1]  # a video without auto JSON keeps its manual masklets

    (root / "sav_000001_auto.json").write_text(json.dumps(dict(auto, masklet=auto["masklet"][:2])))
    with pytest.raises(DataError, match="annotated frames") as err:
        SAVReader(root, include_auto=True)[0].masks(0)
    assert err.value.path == str(root / "sav_000001_auto.json")


def test_val_layout(tmp_path: Path) -> None:
    summary = synthesize("sav", tmp_path, videos=1, frames=3, size=(24, 32), seed=4, objects=2, layout="val")
    reader = SAVReader(tmp_path, layout="val")
    video = reader[0]
    assert reader.names == ["sav_000001"] and reader.problems == []
    assert (video.num_frames, video.total_frames) == (3, 9)
    assert [video.frame_index(k) for k in range(3)] == [0, 4, 8]
    png = tmp_path / "Annotations_6fps" / "sav_000001" / "001" / "00004.png"
    np.testing.assert_array_equal(video.masks(1).decode([1])[0], np.asarray(Image.open(png)) > 0)
    assert sum(len(video.masks(k).ids()) for k in range(3)) == summary["masks"]
    with pytest.raises(ValueError, match="train layout"):
        SAVReader(tmp_path, layout="val", include_auto=True)


def test_real_example_annotations(tmp_path: Path) -> None:
    example = _example()
    frames = tmp_path / "frames" / "sav_000001"
    frames.mkdir(parents=True)
    cv2.imwrite(str(frames / "00000.jpg"), np.zeros((848, 480, 3), np.uint8))
    reader = SAVReader(tmp_path / "frames", json_root=example)
    video = reader[0]
    assert (video.num_frames, video.total_frames) == (121, 1)
    assert video.frame_index(120) == 480
    data = json.loads((example / "sav_000001_manual.json").read_text())
    assert len(data["masklet"][0]) == 5
    assert video.masks(0).ids() == [0, 1, 2, 4]  # masklet 3 first appears on annotated frame 113
    assert video.masks(113).ids() == [0, 1, 2, 3, 4]
    for k in (0, 60, 113):
        decoded = video.masks(k).decode(range(5))
        areas = [int(mask_utils.area({"size": r["size"], "counts": r["counts"].encode()})) for r in data["masklet"][k]]
        assert decoded.sum(axis=(1, 2)).tolist() == areas
    clip = load_clip(video, ClipSpec(frames=[0], object_ids=[1]))
    assert clip.orig_size == (848, 480)
    assert clip.masks[0, 0].sum() == mask_utils.area({"size": [848, 480], "counts": data["masklet"][0][1]["counts"]})
    with_auto = SAVReader(tmp_path / "frames", json_root=example, include_auto=True)[0]
    assert max(with_auto.masks(0).ids()) == 13  # 5 manual + 9 auto masklets


def test_real_example_video_directly() -> None:
    example = _example()
    video = SAVVideo("sav_000001", Path("/nonexistent"), example / "sav_000001_manual.json")
    assert video.size == (848, 480) and video.num_frames == 121 and video.total_frames == 0
    with pytest.raises(DataError, match="missing") as err:
        video.read_frame(1)
    assert err.value.path == "/nonexistent/00004.jpg"


def test_missing_and_truncated_frames_are_named(sav_train: tuple[Path, dict[str, int]]) -> None:
    root, _ = sav_train
    (root / "sav_000001" / "00004.jpg").unlink()
    jpeg = root / "sav_000001" / "00008.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:-30])
    video = SAVReader(root)[0]
    with pytest.raises(DataError, match="missing") as err:
        video.read_frame(1)
    assert err.value.path == str(root / "sav_000001" / "00004.jpg")
    with pytest.raises(DataError, match="truncated") as err:
        video.read_frame(2)
    assert err.value.path == str(jpeg)


def test_corrupt_json_found_at_parse_time(sav_train: tuple[Path, dict[str, int]]) -> None:
    root, _ = sav_train
    path = root / "sav_000001_manual.json"
    path.write_text('{"masklet": [[{"size": [24, 32], "counts": "0"}]], oops}')
    video = SAVReader(root)[0]
    with pytest.raises(DataError, match="not valid JSON") as err:
        video.masks(0)
    assert err.value.path == str(path)


def test_rle_of_other_size_than_frames_is_named(sav_train: tuple[Path, dict[str, int]]) -> None:
    root, _ = sav_train
    path = root / "sav_000002_manual.json"
    data = json.loads(path.read_text())
    data["masklet"] = [[encode_rle(np.ones((20, 32), bool))] * 2 for _ in data["masklet"]]
    data["video_height"] = 20.0
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        load_clip(SAVReader(root)[1], ClipSpec(frames=[0], object_ids=[0]))
    assert err.value.path == str(path)


@pytest.mark.parametrize("case", ["truncated_json", "empty_json", "empty_folder", "no_json", "no_frames", "listed"])
def test_indexing_problems_raise_or_are_collected(
    sav_train: tuple[Path, dict[str, int]], tmp_path: Path, case: str
) -> None:
    root, _ = sav_train
    bad = "sav_000002"
    file_list = None
    if case == "truncated_json":
        expected = root / f"{bad}_manual.json"
        expected.write_bytes(expected.read_bytes()[:-100])
    elif case == "empty_json":
        expected = root / f"{bad}_manual.json"
        expected.write_bytes(b"")
    elif case == "empty_folder":
        expected = root / bad
        for frame in expected.iterdir():
            frame.unlink()
    elif case == "no_json":
        expected = root / f"{bad}_manual.json"
        expected.unlink()
    elif case == "no_frames":
        shutil.rmtree(root / bad)
        expected = root / f"{bad}_manual.json"
    else:
        shutil.rmtree(root / bad)
        (root / f"{bad}_manual.json").unlink()
        file_list = tmp_path / "list.txt"
        file_list.write_text(f"sav_000001\n{bad}\n")
        expected = file_list
    with pytest.raises(DataError) as err:
        SAVReader(root, file_list=file_list)
    assert err.value.path == str(expected)
    reader = SAVReader(root, file_list=file_list, strict=False)
    assert reader.names == ["sav_000001"]
    assert [p.path for p in reader.problems] == [str(expected)]
