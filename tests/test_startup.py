"""Start-up: the evaluation and data tools import only what they use (no torch, torchmetrics or transformers), so
`samlab eval vos` on a few videos takes well under a second of imports (docs/benchmarks.md, "Start-up")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "torchmetrics", "transformers", "lightning")
PROBE = f"""
import json, sys
from samlab.cli import main
status = main(sys.argv[1:])
print(json.dumps({{"status": status, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""


def _run(*argv: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("startup")
    assert (
        _run("data", "synth", "--format", "mose", str(root / "mose"), "--videos", "2", "--frames", "3")["status"] == 0
    )
    assert _run("data", "synth", "--format", "coco", str(root / "coco"), "--videos", "2")["status"] == 0
    coco = json.loads((root / "coco" / "annotations" / "instances.json").read_text())
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in coco["annotations"]
    ]
    assert results
    (root / "results.json").write_text(json.dumps(results))
    return root


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "vos", "--gt", "{root}/mose/Annotations", "--pred", "{root}/mose/Annotations"],
        [
            "eval",
            "coco",
            "--gt",
            "{root}/coco/annotations/instances.json",
            "--pred",
            "{root}/results.json",
            "--iou-type",
            "bbox",
        ],
        [
            "eval",
            "contour",
            "--gt",
            "{root}/mose/Annotations/synth_0000",
            "--pred",
            "{root}/mose/Annotations/synth_0000",
        ],
        ["data", "check", "--format", "mose", "{root}/mose"],
        ["data", "stats", "--format", "coco", "{root}/coco"],
        ["data", "synth", "--format", "sav", "{root}/sav", "--videos", "1", "--frames", "3"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_tool_imports_no_torch(data, argv):
    report = _run(*(word.format(root=data) for word in argv))
    assert report["status"] == 0
    assert report["heavy"] == []
