"""`samlab eval vos`: folder layouts, the official protocol's numbers, missing predictions and bad input."""

from __future__ import annotations

import csv
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samlab.data.formats import base
from samlab.errors import DataError
from samlab.tools.eval_vos import (
    detect_layout,
    evaluate_video,
    evaluate_vos_folders,
    read_binary_mask,
    read_object_ids,
    run_eval_vos,
)

HEIGHT, WIDTH, FRAMES = 48, 80, 6
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128] + [0, 0, 0] * 251


def label_maps(video: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """GT and prediction label maps of one synthetic video (ids 1-4), imperfect in every way the protocol handles.

    1: a moving box, predicted shifted and sometimes shrunk; 2: a disk entering the GT on frame 2, predicted one frame
    early and missed on frame 4; 3: a prediction-only object on frame 3; 4: a box on the bottom-right border.
    """
    gts, preds = [], []
    for t in range(FRAMES):
        gt = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
        pred = np.zeros_like(gt)
        left = 5 + 3 * t + video
        gt[10:26, left : left + 20] = 1
        pred[11 + video : 26 - t % 2, left + 2 : left + 21] = 1
        if t >= 2:
            cv2.circle(gt, (60 - 2 * video, 30), 8, 2, -1)
        if t >= 1 and t != 4:
            cv2.circle(pred, (61 - 2 * video, 31), 7 + t % 2, 2, -1)
        if t == 3:
            pred[2:6, 40:46] = 3
        gt[40:, 70:] = 4
        pred[42 - video :, 66:] = 4
        gts.append(gt)
        preds.append(pred)
    return gts, preds


def save_palette(path: Path, labels: np.ndarray) -> None:
    image = Image.fromarray(labels, mode="P")
    image.putpalette(PALETTE)
    image.save(path)


def write_case(root: Path, layout: str, videos: int = 2) -> tuple[Path, Path]:
    """``root/gt`` and ``root/pred`` in the DAVIS or SA-V layout; SA-V gets the objects present in the GT (1, 2, 4)."""
    for video in range(videos):
        gts, preds = label_maps(video)
        for kind, maps in (("gt", gts), ("pred", preds)):
            for t, labels in enumerate(maps):
                if layout == "davis":
                    folder = root / kind / f"video{video}"
                    folder.mkdir(parents=True, exist_ok=True)
                    save_palette(folder / f"{t:05d}.png", labels)
                    continue
                for obj in (1, 2, 4):
                    folder = root / kind / f"video{video}" / f"{obj - 1:03d}"
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(((labels == obj) * 255).astype(np.uint8), mode="L").save(folder / f"{t:05d}.png")
    return root / "gt", root / "pred"


# Frozen figures of `write_case`: the official SA-V evaluator (sav_dataset/utils/sav_benchmark.py of
# facebookresearch/sam2, run outside the repo on these very folders) printed the same numbers for both layouts.
OFFICIAL = {
    # skip_first_last: (J&F, J, F, {(video, object in DAVIS numbering): (J, F)})
    False: (
        55.41270502653873,
        60.919719261185584,
        49.905690791891885,
        {
            ("video0", 1): (78.02305836089016, 77.32089144107192),
            ("video0", 2): (46.064224332881054, 47.51838235294118),
            ("video0", 4): (57.69230769230768, 15.0),
            ("video1", 1): (72.85968603333872, 51.376099499338636),
            ("video1", 2): (46.064224332881054, 47.51838235294118),
            ("video1", 4): (64.81481481481481, 60.70038910505837),
        },
    ),
    True: (
        52.401329681228745,
        58.167495531349914,
        46.63516383110757,
        {
            ("video0", 1): (78.02305836089016, 77.32089144107192),
            ("video0", 2): (37.80755314337404, 37.70680147058824),
            ("video0", 4): (57.692307692307686, 15.0),
            ("video1", 1): (72.85968603333872, 51.376099499338636),
            ("video1", 2): (37.80755314337404, 37.70680147058824),
            ("video1", 4): (64.81481481481481, 60.70038910505837),
        },
    ),
}


@pytest.mark.parametrize("layout", ["davis", "sav"])
@pytest.mark.parametrize("skip", [False, True])
def test_numbers_equal_official_evaluator(tmp_path: Path, layout: str, skip: bool):
    gt, pred = write_case(tmp_path, layout)
    result = evaluate_vos_folders(gt, pred, skip_first_last=skip)
    jf, j, f, objects = OFFICIAL[skip]
    assert (result.jf, result.j, result.f) == pytest.approx((jf, j, f), abs=1e-9)
    ours = {(o.video, int(o.object) + (1 if layout == "sav" else 0)): (o.j, o.f) for o in result.objects}
    assert ours.keys() == objects.keys()
    for key, expected in objects.items():
        assert ours[key] == pytest.approx(expected, abs=1e-9)
    assert result.frames == 2 * (FRAMES - 2 * skip) * (3 if layout == "sav" else 1)
    assert result.missing == []


def test_shifted_square_hand_numbers(tmp_path: Path):
    for t in range(3):
        gt = np.zeros((100, 100), dtype=np.uint8)
        pred = np.zeros_like(gt)
        gt[40:60, 40:60] = 1
        pred[40:60, 44:64] = 1  # shifted right by 4 px: J = 320 / 480
        for kind, labels in (("gt", gt), ("pred", pred)):
            (tmp_path / kind / "sq").mkdir(parents=True, exist_ok=True)
            save_palette(tmp_path / kind / "sq" / f"{t}.png", labels)
    result = evaluate_vos_folders(tmp_path / "gt", tmp_path / "pred")
    assert [(o.video, o.object, o.frames) for o in result.objects] == [("sq", "1", 3)]
    assert result.j == pytest.approx(100 * 2 / 3)


def test_missing_predictions_count_as_empty(tmp_path: Path):
    gt, pred = write_case(tmp_path, "davis")
    full = evaluate_vos_folders(gt, pred)
    (pred / "video0" / "00003.png").unlink()
    result = evaluate_vos_folders(gt, pred)
    assert result.missing == ["video0/00003.png"]
    # Replacing the frame by an explicitly empty prediction gives the same numbers.
    save_palette(pred / "video0" / "00003.png", np.zeros((HEIGHT, WIDTH), dtype=np.uint8))
    explicit = evaluate_vos_folders(gt, pred)
    assert (result.j, result.f) == pytest.approx((explicit.j, explicit.f))
    assert result.j < full.j

    for png in (pred / "video1").iterdir():
        png.unlink()
    (pred / "video1").rmdir()
    result = evaluate_vos_folders(gt, pred)
    assert "video1/" in result.missing
    video1 = [o for o in result.objects if o.video == "video1"]
    assert video1 and all(o.j == 0 and o.f == 0 for o in video1)  # GT present on every counted frame


def test_layout_detection_and_mismatch(tmp_path: Path):
    gt, _ = write_case(tmp_path / "d", "davis", videos=1)
    sav_gt, sav_pred = write_case(tmp_path / "s", "sav", videos=1)
    assert detect_layout(gt / "video0") == "davis"
    assert detect_layout(sav_gt / "video0") == "sav"
    with pytest.raises(DataError, match="sav layout but ground truth is in davis"):
        evaluate_video(gt / "video0", sav_pred / "video0")
    (gt / "video0" / "extra").mkdir()
    with pytest.raises(DataError, match="mixes"):
        detect_layout(gt / "video0")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no mask PNGs"):
        detect_layout(tmp_path / "empty")


def test_bad_input_names_the_file(tmp_path: Path):
    gt, pred = write_case(tmp_path, "davis", videos=1)
    with pytest.raises(DataError, match="ground-truth folder does not exist"):
        evaluate_vos_folders(tmp_path / "nope", pred)
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="none of the 1 ground-truth video"):
        evaluate_vos_folders(gt, tmp_path / "other")
    bad = pred / "video0" / "00002.png"
    cv2.imwrite(str(bad), np.zeros((HEIGHT, WIDTH + 1), dtype=np.uint8))
    with pytest.raises(DataError, match=r"00002\.png: mask is 81x48 \(WxH\) but ground truth"):
        evaluate_vos_folders(gt, pred)
    Image.new("RGB", (WIDTH, HEIGHT), (255, 0, 0)).save(bad)
    with pytest.raises(DataError, match=r"00002\.png: mask PNG is in colour"):
        evaluate_vos_folders(gt, pred)
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DataError, match=r"00002\.png: cannot decode"):
        evaluate_vos_folders(gt, pred)


def test_png_readers_agree_with_pil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(0)
    labels = np.zeros((37, 53), dtype=np.uint8)
    labels[5:30, 7:40] = rng.integers(0, 6, size=(25, 33))  # noisy rows make OpenCV pick Sub/Up/Paeth filters
    paths = {"palette": tmp_path / "p.png", "opencv": tmp_path / "c.png", "sixteen": tmp_path / "i.png"}
    save_palette(paths["palette"], labels)
    cv2.imwrite(str(paths["opencv"]), labels)
    cv2.imwrite(str(paths["sixteen"]), labels.astype(np.uint16) * 300)
    for name in ("palette", "opencv"):
        np.testing.assert_array_equal(read_object_ids(paths[name]), labels)
        np.testing.assert_array_equal(read_binary_mask(paths[name]), labels > 0)
    np.testing.assert_array_equal(read_object_ids(paths["sixteen"]), labels.astype(np.uint16) * 300)
    monkeypatch.setattr(base, "_deflate", None)  # plain zlib decodes the same bytes
    np.testing.assert_array_equal(read_object_ids(paths["palette"]), labels)


def grey_png_with_filters(image: np.ndarray, filters: list[int]) -> bytes:
    """An 8-bit grey PNG whose row ``y`` uses PNG filter ``filters[y]`` (0 None, 1 Sub, 2 Up, 3 Average)."""
    rows = []
    above = np.zeros(image.shape[1], dtype=np.int16)
    for row, kind in zip(image.astype(np.int16), filters):
        left = np.concatenate([[0], row[:-1]])
        predictor = {0: 0, 1: left, 2: above, 3: (left + above) // 2}[kind]
        rows.append(bytes([kind]) + ((row - predictor) % 256).astype(np.uint8).tobytes())
        above = row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", image.shape[1], image.shape[0], 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("filters", [[2, 1, 0, 2, 2, 1], [0, 3, 2, 0, 1, 0]])
def test_png_row_filters(tmp_path: Path, filters: list[int]):
    image = np.random.default_rng(1).integers(0, 256, size=(6, 9)).astype(np.uint8)
    path = tmp_path / "f.png"
    path.write_bytes(grey_png_with_filters(image, filters))
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)  # the helper writes valid PNGs
    np.testing.assert_array_equal(read_object_ids(path), image)  # Sub/Up decoded here, Average through PIL


def test_workers_give_the_same_result(tmp_path: Path):
    gt, pred = write_case(tmp_path, "sav")
    assert evaluate_vos_folders(gt, pred, workers=2) == evaluate_vos_folders(gt, pred)


def test_run_eval_vos_prints_json_and_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    gt, pred = write_case(tmp_path, "davis")
    expected = evaluate_vos_folders(gt, pred)
    out_csv = tmp_path / "scores.csv"
    assert run_eval_vos(gt, pred, as_json=True, csv=out_csv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["J&F"] == pytest.approx(expected.jf)
    assert [(row["video"], row["object"]) for row in printed["objects"]] == [
        ("video0", "1"),
        ("video0", "2"),
        ("video0", "4"),
        ("video1", "1"),
        ("video1", "2"),
        ("video1", "4"),
    ]
    rows = list(csv.DictReader(out_csv.open()))
    assert rows[0]["video"] == "Global score" and float(rows[0]["J"]) == pytest.approx(expected.j)
    assert len(rows) == 7

    assert run_eval_vos(gt, pred) == 0
    assert f"J&F: {expected.jf:.1f}" in capsys.readouterr().out
    assert run_eval_vos(tmp_path / "nope", pred) == 2
    assert "ground-truth folder does not exist" in capsys.readouterr().err
