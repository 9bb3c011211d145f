"""DAVISReader on MOSE/DAVIS folders in their real layout: synthesized ones and hand-made edge cases."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samlab.data.formats.davis import DAVISReader, frame_sort_key, has_file, list_frame_files, read_file_list
from samlab.data.sampling import ClipSpec, load_clip
from samlab.data.synth import davis_palette, synthesize
from samlab.errors import DataError


def _jpeg(path: Path, size: tuple[int, int] = (12, 16), value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), value, dtype=np.uint8))


def _png(path: Path, labels: np.ndarray, palette: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.frombytes("P" if palette else "L", labels.shape[::-1], labels.astype(np.uint8).tobytes())
    if palette:
        image.putpalette(davis_palette())
    image.save(path)


def test_reads_synthesized_mose(tmp_path: Path) -> None:
    summary = synthesize("mose", tmp_path, videos=2, frames=8, size=(24, 32), seed=5, objects=3)
    reader = DAVISReader(tmp_path)
    assert len(reader) == 2 and reader.names == ["synth_0000", "synth_0001"]
    masks_seen = 0
    for video in reader:
        assert (video.num_frames, video.total_frames) == (8, 8)
        assert [video.frame_index(k) for k in range(8)] == list(range(8))
        assert video.frame_path(3) == tmp_path / "JPEGImages" / video.name / "00003.jpg"
        assert video.masks(0).ids() == [1, 2, 3]
        for k in range(8):
            written = np.asarray(Image.open(tmp_path / "Annotations" / video.name / f"{k:05d}.png"))
            decoded = video.masks(k).decode([1, 2, 3])
            np.testing.assert_array_equal(decoded, written[None] == np.array([1, 2, 3])[:, None, None])
            masks_seen += len(video.masks(k).ids())
    assert masks_seen == summary["masks"]
    clip = load_clip(reader[1], ClipSpec(frames=[0, 1, 2], object_ids=[1, 3]))
    assert clip.masks.shape == (3, 2, 24, 32) and clip.frames[0].shape == (24, 32, 3)
    assert [v.name for v in reader[::-1]] == ["synth_0001", "synth_0000"]


def test_file_list_png_and_jpeg_frames_sparse_annotations(tmp_path: Path) -> None:
    labels = np.zeros((12, 16), dtype=np.uint8)
    labels[2:5, 3:7] = 2
    labels[8:, :4] = 255  # DAVIS "void": never an object
    for name in ("bear", "cow"):
        _jpeg(tmp_path / "JPEGImages" / name / "00000.png")
        _jpeg(tmp_path / "JPEGImages" / name / "00001.jpeg")
        _jpeg(tmp_path / "JPEGImages" / name / "00002.JPG")
        _png(tmp_path / "Annotations" / name / "00000.png", labels)
    _png(tmp_path / "Annotations" / "cow" / "00002.png", labels)
    file_list = tmp_path / "ImageSets" / "2017" / "train.txt"
    file_list.parent.mkdir(parents=True)
    file_list.write_text("cow\n\n")
    reader = DAVISReader(tmp_path, file_list=file_list)
    assert reader.names == ["cow"]
    video = reader[0]
    assert (video.num_frames, video.total_frames) == (2, 3)
    assert [video.frame_index(k) for k in range(2)] == [0, 2]
    assert [video.frame_path(k).name for k in range(2)] == ["00000.png", "00002.JPG"]
    assert video.masks(1).ids() == [2]
    assert video.masks(1).decode([2])[0].sum() == 12
    assert video.read_frame(0).shape == (12, 16, 3)
    assert DAVISReader(tmp_path).names == ["bear", "cow"]


def test_per_object_folders(tmp_path: Path) -> None:
    for t in range(6):
        _jpeg(tmp_path / "JPEGImages" / "v" / f"{t:05d}.jpg")
    first, second = np.zeros((12, 16), np.uint8), np.zeros((12, 16), np.uint8)
    first[1:3, 1:4] = 255
    second[5:9, 6:8] = 1
    _png(tmp_path / "Annotations" / "v" / "000" / "00000.png", first, palette=False)
    _png(tmp_path / "Annotations" / "v" / "003" / "00000.png", np.zeros_like(second), palette=False)
    _png(tmp_path / "Annotations" / "v" / "003" / "00005.png", second, palette=False)
    video = DAVISReader(tmp_path, per_object=True)[0]
    assert video.num_frames == 2 and [video.frame_index(k) for k in range(2)] == [0, 5]
    assert video.masks(0).ids() == [0]  # object 3's PNG is empty on frame 0
    assert video.masks(1).ids() == [3]
    decoded = video.masks(1).decode([0, 3])
    assert not decoded[0].any()
    np.testing.assert_array_equal(decoded[1], second > 0)


def test_wrong_size_png_is_named(tmp_path: Path) -> None:
    _jpeg(tmp_path / "JPEGImages" / "v" / "00000.jpg", size=(12, 16))
    _png(tmp_path / "Annotations" / "v" / "00000.png", np.ones((10, 16), np.uint8))
    reader = DAVISReader(tmp_path)
    with pytest.raises(DataError) as err:
        load_clip(reader[0], ClipSpec(frames=[0], object_ids=[1]))
    assert err.value.path == str(tmp_path / "Annotations" / "v" / "00000.png")

    _jpeg(tmp_path / "obj" / "JPEGImages" / "v" / "00000.jpg", size=(12, 16))
    png = tmp_path / "obj" / "Annotations" / "v" / "001" / "00000.png"
    _png(png, np.ones((10, 16), np.uint8), palette=False)
    with pytest.raises(DataError) as err:
        DAVISReader(tmp_path / "obj", per_object=True)[0].masks(0).ids()
    assert err.value.path == str(png)


def test_truncated_and_missing_frames_are_named(tmp_path: Path) -> None:
    _jpeg(tmp_path / "JPEGImages" / "v" / "00000.jpg")
    truncated = tmp_path / "JPEGImages" / "v" / "00000.jpg"
    truncated.write_bytes(truncated.read_bytes()[:-40])
    labels = np.ones((12, 16), np.uint8)
    _png(tmp_path / "Annotations" / "v" / "00000.png", labels)
    _png(tmp_path / "Annotations" / "v" / "00001.png", labels)  # annotated frame without its JPEG
    video = DAVISReader(tmp_path)[0]
    with pytest.raises(DataError, match="truncated") as err:
        video.read_frame(0)
    assert err.value.path == str(truncated)
    with pytest.raises(DataError, match="missing") as err:
        video.read_frame(1)
    assert err.value.path == str(tmp_path / "JPEGImages" / "v" / "00001.jpg")


@pytest.mark.parametrize("case", ["empty_frames", "no_frame_folder", "no_annotation_folder", "no_png", "listed"])
def test_indexing_problems_raise_or_are_collected(tmp_path: Path, case: str) -> None:
    _jpeg(tmp_path / "JPEGImages" / "good" / "00000.jpg")
    _png(tmp_path / "Annotations" / "good" / "00000.png", np.ones((12, 16), np.uint8))
    file_list = None
    if case == "empty_frames":
        (tmp_path / "JPEGImages" / "bad").mkdir()
        (tmp_path / "Annotations" / "bad").mkdir()
        expected = tmp_path / "JPEGImages" / "bad"
    elif case == "no_frame_folder":
        _png(tmp_path / "Annotations" / "bad" / "00000.png", np.ones((12, 16), np.uint8))
        expected = tmp_path / "Annotations" / "bad"
    elif case == "no_annotation_folder":
        _jpeg(tmp_path / "JPEGImages" / "bad" / "00000.jpg")
        expected = tmp_path / "JPEGImages" / "bad"
    elif case == "no_png":
        _jpeg(tmp_path / "JPEGImages" / "bad" / "00000.jpg")
        (tmp_path / "Annotations" / "bad").mkdir()
        expected = tmp_path / "Annotations" / "bad"
    else:
        file_list = tmp_path / "val.txt"
        file_list.write_text("good\nbad\n")
        expected = file_list
    with pytest.raises(DataError) as err:
        DAVISReader(tmp_path, file_list=file_list)
    assert err.value.path == str(expected)
    reader = DAVISReader(tmp_path, file_list=file_list, strict=False)
    assert reader.names == ["good"]
    assert [p.path for p in reader.problems] == [str(expected)]
    assert "bad" in reader.problems[0].message


def test_missing_roots_and_file_list(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        DAVISReader(tmp_path, strict=False)
    assert err.value.path == str(tmp_path / "JPEGImages")
    with pytest.raises(DataError, match="file list is missing"):
        read_file_list(tmp_path / "nope.txt")


def test_object_folder_must_be_numeric(tmp_path: Path) -> None:
    _jpeg(tmp_path / "JPEGImages" / "v" / "00000.jpg")
    _png(tmp_path / "Annotations" / "v" / "cat" / "00000.png", np.ones((12, 16), np.uint8), palette=False)
    with pytest.raises(DataError, match="integer object id") as err:
        DAVISReader(tmp_path, per_object=True)[0]
    assert err.value.path == str(tmp_path / "Annotations" / "v" / "cat")


def test_frame_listing_helpers(tmp_path: Path) -> None:
    for name in ("10.jpg", "9.JPEG", "2.png", "a.jpg", ".hidden.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert list(list_frame_files(tmp_path)) == ["2", "9", "10", "a"]
    assert list_frame_files(tmp_path / "missing") == {}
    assert sorted(["10", "9", "b", "00002"], key=frame_sort_key) == ["00002", "9", "10", "b"]
    assert has_file(tmp_path, (".txt",)) and has_file(tmp_path, (".png",))
    assert not has_file(tmp_path, (".gif",))
    listing = tmp_path / "list.txt"
    listing.write_text("bear\n  cow.mp4 \n\n")
    assert read_file_list(listing) == ["bear", "cow"]
