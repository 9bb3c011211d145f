"""``samlab validate``'s val/J&F equals ``samlab predict`` + ``samlab eval vos`` on the same model and videos.

The official protocol scores J&F at the videos' original resolution; the frames here (48x64) differ from the model's
input (64x64), so a validation scored at the model's resolution would not match.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from samlab.lightning_cli import SamlabCLI
from samlab.tools.eval_vos import evaluate_vos_folders

QUICKSTART = Path(__file__).resolve().parents[3] / "configs" / "quickstart.yaml"
TINY_MODEL = [
    "++model.image_encoder.trunk.embed_dim=32",
    "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.dim_feedforward=256",
]


def _run(command: str, config: Path) -> SamlabCLI:
    return SamlabCLI(args=[command, "--config", str(QUICKSTART), "--config", str(config)])


@pytest.mark.usefixtures("one_torch_thread")
def test_validate_j_and_f_equals_predict_then_eval_vos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the quickstart's relative paths (runs/quickstart/predictions) land here
    overrides = {
        "trainer": {"logger": False},
        "model": {"init_args": {"model_overrides": TINY_MODEL}},
        "data": {
            "init_args": {
                "root": str(tmp_path / "data"),
                "train_videos": 1,
                "val_videos": 3,
                "frames": 5,
                "frame_size": [48, 64],
                "objects": 2,
                "num_workers": 0,
            }
        },
    }
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(overrides))
    validated = _run("validate", config)
    val_jf = float(validated.trainer.callback_metrics["val/J&F"])
    _run("predict", config)
    result = evaluate_vos_folders(tmp_path / "data" / "val" / "Annotations", tmp_path / "runs/quickstart/predictions")
    assert result.missing == [] and result.frames == 15 and len(result.objects) == 6
    assert 0 < result.jf < 100
    assert val_jf == pytest.approx(result.jf, abs=1e-4)
    assert float(validated.trainer.callback_metrics["val/J"]) == pytest.approx(result.j, abs=1e-4)
