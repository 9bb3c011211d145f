import json
import shutil
from dataclasses import asdict

import cv2
import numpy as np
import pytest

from samlab.cli import main
from samlab.data.synth import synthesize
from samlab.tools.inspection import check_dataset, dataset_stats, open_reader

CASES = [
    ("mose", {"videos": 2, "frames": 6}),
    ("sav", {"videos": 2, "frames": 4}),
    ("sav", {"videos": 2, "frames": 4, "layout": "val"}),
    ("sa1b", {"videos": 3}),
    ("coco", {"videos": 3}),
]


@pytest.mark.parametrize(("format", "kwargs"), CASES)
def test_stats_equal_synth_ground_truth_and_check_is_clean(tmp_path, capsys, format, kwargs):
    counts = synthesize(format, tmp_path / "ds", size=(40, 56), seed=7, objects=3, **kwargs)
    stats = asdict(dataset_stats(format, tmp_path / "ds"))
    assert stats == {key: counts[key] for key in stats}
    assert stats["masks"] > 0 and stats["objects"] > 0
    assert check_dataset(format, tmp_path / "ds") == []
    assert main(["data", "stats", "--format", format, str(tmp_path / "ds"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == stats
    assert main(["data", "check", "--format", format, str(tmp_path / "ds")]) == 0


def test_check_lists_every_problem_with_its_file(tmp_path, capsys):
    root = tmp_path / "mose"
    synthesize("mose", root, videos=3, frames=5, size=(40, 56), seed=1, objects=2)
    videos = sorted(p.name for p in (root / "JPEGImages").iterdir())
    # 1: a truncated frame; 2: a mask PNG of the wrong size; 3: a missing frame.
    frame = root / "JPEGImages" / videos[0] / "00002.jpg"
    frame.write_bytes(frame.read_bytes()[:-50])
    png = root / "Annotations" / videos[1] / "00001.png"
    cv2.imwrite(str(png), np.zeros((20, 20), np.uint8))
    (root / "JPEGImages" / videos[2] / "00003.jpg").unlink()
    problems = check_dataset("mose", root)
    text = "\n".join(str(p) for p in problems)
    assert "00002.jpg: truncated JPEG" in text
    assert str(png) in text and "20x20" in text
    assert f"{videos[2]}/00003" in text
    assert main(["data", "check", "--format", "mose", str(root)]) == 1
    out = capsys.readouterr()
    assert "truncated JPEG" in out.out and "problem(s)" in out.err


def test_check_reports_corrupt_json_and_objectless_image(tmp_path):
    root = tmp_path / "sa1b"
    synthesize("sa1b", root, videos=2, size=(40, 56), seed=3, objects=2)
    jsons = sorted(root.glob("*.json"))
    jsons[0].write_text("{not json")
    data = json.loads(jsons[1].read_text())
    data["annotations"] = []
    jsons[1].write_text(json.dumps(data))
    text = "\n".join(str(p) for p in check_dataset("sa1b", root))
    assert jsons[0].name in text
    assert "no annotated object" in text


def test_open_reader_errors(tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        open_reader("mose", tmp_path / "nope")
    with pytest.raises(ValueError, match="unknown format"):
        open_reader("voc", tmp_path)
    (tmp_path / "empty").mkdir()
    problems = check_dataset("coco", tmp_path / "empty")
    assert len(problems) == 1 and "no COCO annotation file" in problems[0].message


def test_coco_root_as_json_file(tmp_path):
    root = tmp_path / "coco"
    synthesize("coco", root, videos=2, size=(40, 56), seed=3, objects=2)
    ann = next((root / "annotations").glob("*.json"))
    assert len(open_reader("coco", ann)) == len(open_reader("coco", root)) == 2
    shutil.rmtree(root / "images")
    assert any("missing" in p.message for p in check_dataset("coco", root))


def test_check_warns_about_a_deleted_annotation_png_and_stats_names_the_video(tmp_path, capsys):
    """MOSE layout, every frame annotated; one video loses the PNG of frame 3: a named, counted warning, exit 0."""
    root = tmp_path / "mose"
    synthesize("mose", root, videos=3, frames=6, size=(40, 56), seed=2, objects=2)
    videos = sorted(p.name for p in (root / "JPEGImages").iterdir())
    (root / "Annotations" / videos[1] / "00003.png").unlink()
    problems = check_dataset("mose", root)
    assert [p.warning for p in problems] == [True]
    assert problems[0].path == str(root / "Annotations" / videos[1] / "00003.png")
    assert f"video '{videos[1]}': frame 00003.jpg has no annotation PNG" in problems[0].message
    assert main(["data", "check", "--format", "mose", str(root)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"warning: {root / 'Annotations' / videos[1] / '00003.png'}: ")
    assert "0 problem(s), 1 warning(s)" in out.err
    stats = dataset_stats("mose", root)
    assert stats.sparsely_annotated == [videos[1]] and stats.annotated_frames == 17 and stats.frames == 18
    # A frame outside the annotated range (the last one) is not a warning, but the video is sparse.
    (root / "Annotations" / videos[2] / "00005.png").unlink()
    assert len(check_dataset("mose", root)) == 1
    assert dataset_stats("mose", root).sparsely_annotated == [videos[1], videos[2]]
    # A real error is still exit 1, and counted apart from the warnings.
    (root / "JPEGImages" / videos[0] / "00002.jpg").write_bytes(b"not a jpeg")
    assert main(["data", "check", "--format", "mose", str(root)]) == 1
    assert "1 problem(s), 1 warning(s)" in capsys.readouterr().err


def test_check_follows_the_annotation_step_of_sav_val(tmp_path, capsys):
    """SA-V val: PNGs every 4th frame are not warnings; a lost on-step PNG of one object is."""
    root = tmp_path / "sav"
    counts = synthesize("sav", root, videos=2, frames=4, size=(40, 56), seed=3, objects=2, layout="val")
    assert counts["sparsely_annotated"] == ["sav_000001", "sav_000002"]
    assert check_dataset("sav", root) == []
    assert dataset_stats("sav", root).sparsely_annotated == ["sav_000001", "sav_000002"]
    lost = root / "Annotations_6fps" / "sav_000002" / "001" / "00008.png"
    lost.unlink()
    (warning,) = check_dataset("sav", root)
    assert warning.warning and warning.path == str(lost)
    assert "video 'sav_000002': object 001 has no annotation PNG for frame 00008" in str(warning)
    (root / "Annotations_6fps" / "sav_000002" / "000" / "00008.png").unlink()  # now no object has frame 8
    (warning,) = check_dataset("sav", root)
    assert warning.path == str(root / "Annotations_6fps" / "sav_000002" / "00008.png")
    assert "frame 00008.jpg has no annotation PNG (inside the annotated frames 00000..00012, every 4)" in str(warning)
    assert main(["data", "check", "--format", "sav", str(root)]) == 0
