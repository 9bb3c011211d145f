"""Tracking benchmarks from video segmentation sets: a DAVIS/MOSE-layout folder to the MOTChallenge layout.

Each video becomes a MOTChallenge sequence whose ground truth are the boxes of its object masks, so that synthetic
videos (:func:`samlab.data.synth.synthesize`) or any VOS set can evaluate a multiple-object tracker with
TrackEval. Boxes are in pixels with the top-left pixel at (0, 0), the convention of every other samlab box; the
detections file written next to the ground truth uses the same convention, so results of a tracker fed with it are
compared in one frame of reference.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from samlab.data.formats.base import image_size
from samlab.data.formats.davis import DAVISReader, list_frame_files
from samlab.data.formats.mot import write_seqinfo
from samlab.masks import masks_to_boxes
from samlab.progress import track


def link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` the same file as ``source``: a hard link, or a copy where links fail (another file system)."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        # Hard links fail across file systems: copy instead.
        shutil.copyfile(source, target)


def write_mot_sequences(
    davis_root: str | os.PathLike[str],
    out_root: str | os.PathLike[str],
    image_dir: str = "JPEGImages",
    annotation_dir: str = "Annotations",
    frame_rate: int = 30,
    progress: bool = True,
) -> list[str]:
    """Write every video of a DAVIS/MOSE-layout folder as a MOTChallenge sequence under ``out_root``.

    For each video ``<seq>``: ``out_root/<seq>/img1/000001.jpg ...`` (hard links, or copies, of every frame file in
    frame order; the suffix is kept), ``seqinfo.ini``, ``gt/gt.txt`` (``frame,id,x,y,w,h,1,1,1``: one line per
    visible object on each annotated frame, id = object id) and ``det/det.txt`` (the same boxes as detections,
    ``frame,-1,x,y,w,h,1,-1,-1,-1``). Frames are numbered from 1 in frame order. Raises
    :class:`~samlab.errors.DataError` for the problems :class:`DAVISReader` reports.
    Returns the sequence names.
    """
    reader = DAVISReader(davis_root, image_dir=image_dir, annotation_dir=annotation_dir)
    out_root = Path(out_root)
    for video in track(reader, "MOT sequences", total=len(reader), unit="video", enabled=progress):
        seq_dir = out_root / video.name
        frames = list(list_frame_files(video.image_folder).values())
        (seq_dir / "img1").mkdir(parents=True, exist_ok=True)
        for number, frame in enumerate(frames, start=1):
            link_or_copy(frame, seq_dir / "img1" / f"{number:06d}{frame.suffix.lower()}")
        height, width = image_size(frames[0])
        write_seqinfo(seq_dir, video.name, len(frames), width, height, frame_rate, "img1", frames[0].suffix.lower())
        number_of = {frame.stem: number for number, frame in enumerate(frames, start=1)}
        gt_lines, det_lines = [], []
        for k in range(video.num_frames):
            number = number_of[video.frame_path(k).stem]
            masks = video.masks(k)
            ids = masks.ids()
            for object_id, (x0, y0, x1, y1) in zip(ids, masks_to_boxes(masks.decode(ids)).tolist()):
                if x1 <= x0:
                    continue  # the object is not visible on this frame
                box = f"{x0:g},{y0:g},{x1 - x0:g},{y1 - y0:g}"
                gt_lines.append(f"{number},{object_id},{box},1,1,1\n")
                det_lines.append(f"{number},-1,{box},1,-1,-1,-1\n")
        for sub, lines in (("gt/gt.txt", gt_lines), ("det/det.txt", det_lines)):
            (seq_dir / sub).parent.mkdir(exist_ok=True)
            (seq_dir / sub).write_text("".join(lines), encoding="utf-8")
    return reader.names
