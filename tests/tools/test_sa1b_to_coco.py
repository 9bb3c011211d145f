"""SA-1B → MASA's COCO files: fields, streaming list parsing, resume after an interruption, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from samlab.errors import DataError
from samlab.masks import encode_rle
from samlab.tools import sa1b_to_coco as module
from samlab.tools.sa1b_to_coco import CATEGORIES, iter_image_list, output_prefix, sa1b_to_coco


def write_sa1b_json(folder: Path, number: int, objects: int = 2) -> None:
    """A small SA-1B ``sa_<number>.json`` with ``objects`` annotations on a 6x8 image."""
    annotations = []
    for j in range(objects):
        mask = np.zeros((6, 8), dtype=bool)
        mask[j : j + 2, number % 6 : number % 6 + 2] = True
        annotations.append(
            {
                "id": number * 100 + j,
                "segmentation": encode_rle(mask),
                "bbox": [float(number % 6), float(j), 2.0, 2.0],
                "area": 4,
                "predicted_iou": 0.9,
                "stability_score": 0.95,
                "point_coords": [[1.0, 1.0]],
                "crop_box": [0, 0, 8, 6],
            }
        )
    record = {
        "image": {"image_id": number, "width": 8, "height": 6, "file_name": f"sa_{number}.jpg"},
        "annotations": annotations,
    }
    (folder / f"sa_{number}.json").write_text(json.dumps(record))


def make_input(tmp_path: Path, count: int, objects_of=lambda n: 2) -> tuple[Path, Path]:
    folder = tmp_path / "sa1b"
    folder.mkdir(parents=True)
    for n in range(1, count + 1):
        write_sa1b_json(folder, n, objects_of(n))
    img_list = tmp_path / "sa1b_coco_fmt_iminfo_test.json"
    img_list.write_text(json.dumps({"images": [{"id": n, "file_name": f"sa_{n}.jpg"} for n in range(1, count + 1)]}))
    return folder, img_list


def expected_coco(folder: Path, names: list[str], with_masks: bool) -> dict:
    """MASA's converter semantics, written plainly (whole lists in memory) as the oracle."""
    images, annotations = [], []
    for name in names:
        record = json.loads((folder / f"{name}.json").read_text())
        image = record["image"]
        images.append(
            {
                "id": image["image_id"],
                "width": image["width"],
                "height": image["height"],
                "file_name": image["file_name"],
            }
        )
        for ann in record["annotations"]:
            row = {"bbox": ann["bbox"], "area": ann["area"]}
            if with_masks:
                row["segmentation"] = ann["segmentation"]
            row |= {"id": ann["id"], "image_id": image["image_id"], "category_id": 1, "iscrowd": 0}
            annotations.append(row)
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}


def test_converts_synthetic_sa1b_like_masa(sa1b_root: Path, tmp_path: Path) -> None:
    img_list = tmp_path / "subset.json"
    names = ["sa_3", "sa_1", "sa_4"]
    img_list.write_text(json.dumps(["sa_3.jpg", "sa_1", 4]))
    summary = sa1b_to_coco(img_list, sa1b_root, tmp_path / "out", workers=0, progress=False)
    mask_file, bbox_file = tmp_path / "out" / "subset_mask_anno.json", tmp_path / "out" / "subset_bbox_anno.json"
    assert (summary.mask_anno, summary.bbox_anno) == (str(mask_file), str(bbox_file))
    mask_anno, bbox_anno = json.loads(mask_file.read_text()), json.loads(bbox_file.read_text())
    assert mask_anno == expected_coco(sa1b_root, names, with_masks=True)
    assert bbox_anno == expected_coco(sa1b_root, names, with_masks=False)
    assert list(mask_anno["annotations"][0]) == [
        *("bbox", "area", "segmentation", "id", "image_id", "category_id", "iscrowd")
    ]
    assert list(mask_anno["images"][0]) == ["id", "width", "height", "file_name"]
    assert summary.images == 3 and summary.annotations == len(mask_anno["annotations"]) and summary.skipped == []
    assert not (tmp_path / "out" / "subset.parts").exists()
    assert mask_anno["categories"] == CATEGORIES


def test_process_pool_gives_the_same_files(tmp_path: Path) -> None:
    # Images 3 and 7 have no annotation: empty fragments must not leave stray commas.
    folder, img_list = make_input(tmp_path, 10, objects_of=lambda n: 0 if n in (3, 7) else 1 + n % 3)
    one = sa1b_to_coco(img_list, folder, tmp_path / "one", workers=0, shard_size=3, progress=False)
    two = sa1b_to_coco(img_list, folder, tmp_path / "two", workers=2, shard_size=4, progress=False)
    assert Path(one.mask_anno).name == "sa1b_coco_fmt_test_mask_anno.json"
    for a, b in ((one.mask_anno, two.mask_anno), (one.bbox_anno, two.bbox_anno)):
        assert Path(a).read_bytes() == Path(b).read_bytes()
    names = [f"sa_{n}" for n in range(1, 11)]
    assert json.loads(Path(one.mask_anno).read_text()) == expected_coco(folder, names, with_masks=True)


def test_resume_after_interruption_gives_the_clean_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, img_list = make_input(tmp_path, 10)
    clean = sa1b_to_coco(img_list, folder, tmp_path / "clean", workers=0, shard_size=3, progress=False)

    converted: list[str] = []
    original = module.convert_image

    def interrupted_after_7(input_dir, name):
        if len(converted) == 7:
            raise KeyboardInterrupt
        converted.append(name)
        return original(input_dir, name)

    monkeypatch.setattr(module, "convert_image", interrupted_after_7)
    with pytest.raises(KeyboardInterrupt):
        sa1b_to_coco(img_list, folder, tmp_path / "out", workers=0, shard_size=3, progress=False)
    assert sorted(p.name for p in (tmp_path / "out" / "sa1b_coco_fmt_test.parts").glob("*.done")) == [
        "0000000.done",
        "0000001.done",
    ]
    converted.clear()
    monkeypatch.setattr(module, "convert_image", lambda d, n: converted.append(n) or original(d, n))
    resumed = sa1b_to_coco(img_list, folder, tmp_path / "out", workers=0, shard_size=3, progress=False)
    assert converted == ["sa_7", "sa_8", "sa_9", "sa_10"]  # shards 0 and 1 (images 1-6) were kept
    assert resumed.resumed_shards == 2 and resumed.images == 10
    for a, b in ((clean.mask_anno, resumed.mask_anno), (clean.bbox_anno, resumed.bbox_anno)):
        assert Path(a).read_bytes() == Path(b).read_bytes()


def test_bad_json_raises_or_is_skipped(tmp_path: Path) -> None:
    folder, img_list = make_input(tmp_path, 4)
    (folder / "sa_2.json").write_text("{not json")
    (folder / "sa_4.json").unlink()
    with pytest.raises(DataError, match=r"sa_2\.json: corrupt annotation JSON"):
        sa1b_to_coco(img_list, folder, tmp_path / "out", workers=0, progress=False)
    summary = sa1b_to_coco(img_list, folder, tmp_path / "out", workers=0, skip_bad=True, progress=False)
    assert summary.images == 2 and len(summary.skipped) == 2
    assert "sa_2.json: corrupt annotation JSON" in summary.skipped[0]
    assert "sa_4.json: annotation JSON is missing" in summary.skipped[1]
    assert [im["id"] for im in json.loads(Path(summary.bbox_anno).read_text())["images"]] == [1, 3]


def test_iter_image_list_forms(tmp_path: Path) -> None:
    cases = {
        "plain.json": json.dumps(["sa_1.jpg", "sa_000000/sa_2.jpg", "sa_3", 4, {"file_name": "sa_5.jpg"}]),
        "masa.json": json.dumps({"info": {}, "images": [{"file_name": "sa_1.jpg", "id": 1}]}),
        "names.txt": "sa_1.jpg\n\nsa_2.json\n",
    }
    expected = {
        "plain.json": ["sa_1", "sa_000000/sa_2", "sa_3", "sa_4", "sa_5"],
        "masa.json": ["sa_1"],
        "names.txt": ["sa_1", "sa_2"],
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert list(iter_image_list(tmp_path / name)) == expected[name]
    (tmp_path / "bad.json").write_text(json.dumps(["sa_1.jpg", 2.5]))
    with pytest.raises(DataError, match=r"bad\.json: entry 1: .* is not an image"):
        list(iter_image_list(tmp_path / "bad.json"))
    (tmp_path / "cut.json").write_text('["sa_1.jpg", "sa_2')
    with pytest.raises(DataError, match="corrupt JSON image list"):
        list(iter_image_list(tmp_path / "cut.json"))
    with pytest.raises(DataError, match="image list is missing"):
        list(iter_image_list(tmp_path / "none.json"))
    assert output_prefix("a/sa1b_coco_fmt_iminfo_500k.json") == "sa1b_coco_fmt_500k"


_PEAK_SCRIPT = """
import sys, tracemalloc
from samlab.tools.sa1b_to_coco import sa1b_to_coco
img_list, folder, out = sys.argv[1:]
sa1b_to_coco(img_list, folder, out + "-warm-up", workers=0, shard_size=50, progress=False)
tracemalloc.start()
sa1b_to_coco(img_list, folder, out, workers=0, shard_size=50, progress=False)
print(tracemalloc.get_traced_memory()[1])
"""


def _peak_bytes(tmp_path: Path, count: int) -> int:
    """Peak of Python allocations while converting ``count`` images, in a fresh interpreter (after a warm-up run,
    so that first-use imports and caches are left out)."""
    folder, img_list = make_input(tmp_path, count)
    args = [sys.executable, "-c", _PEAK_SCRIPT, str(img_list), str(folder), str(tmp_path / "out")]
    return int(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def test_memory_does_not_grow_with_the_number_of_images(tmp_path: Path) -> None:
    # From ~250 entries on, the list parser's 8 KiB read buffer is full: beyond that nothing may grow.
    small = _peak_bytes(tmp_path / "small", 300)
    large = _peak_bytes(tmp_path / "large", 1500)
    print(f"peak traced allocations: {small / 1e6:.3f} MB for 300 images, {large / 1e6:.3f} MB for 1500")
    # Whole lists of images and annotations would grow the peak fivefold.
    assert large < 1.2 * small, (small, large)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from samlab.cli import main

    folder, img_list = make_input(tmp_path, 3)
    (folder / "sa_2.json").unlink()
    argv = ["data", "sa1b-to-coco", "--img-list", str(img_list), "--input", str(folder), "--out", str(tmp_path / "o")]
    assert main([*argv, "--workers", "0"]) == 1
    assert "sa_2.json: annotation JSON is missing" in capsys.readouterr().err
    assert main([*argv, "--workers", "0", "--skip-bad", "--prefix", "p"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert (printed["images"], printed["annotations"], printed["skipped"]) == (2, 4, 1)
    assert printed["mask_anno"] == str(tmp_path / "o" / "p_mask_anno.json")
    assert "skipped: " in captured.err and "sa_2.json" in captured.err
