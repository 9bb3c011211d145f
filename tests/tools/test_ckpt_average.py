"""ckpt average: exact uniform averages, integer buffers copied, Lightning-loadable output, mismatches named."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from samlab.cli import main
from samlab.errors import DataError
from samlab.tools.ckpt_average import average_checkpoints


class Tiny(L.LightningModule):
    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.linear = torch.nn.Linear(2, width)
        self.norm = torch.nn.BatchNorm1d(width)  # num_batches_tracked: an int64 buffer
        self.scale16 = torch.nn.Parameter(torch.zeros(2, dtype=torch.float16))


def lightning_checkpoint(path: Path, value: float, step: int, width: int = 3) -> Path:
    model = Tiny(width)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(value)
            else:
                tensor.fill_(step)
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "global_step": step,
         "pytorch-lightning_version": L.__version__, "epoch": step},
        path,
    )  # fmt: skip
    return path


def test_average_of_lightning_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [lightning_checkpoint(tmp_path / f"{k}.ckpt", value, step=k + 1) for k, value in enumerate([1.0, 2.0, 7.5])]
    out = tmp_path / "avg" / "soup.ckpt"
    assert main(["ckpt", "average", *map(str, paths), "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"checkpoints": 3, "averaged": 7, "copied": 1}

    result = torch.load(out, weights_only=False)
    assert result["global_step"] == 1 and result["epoch"] == 1  # other fields from the first
    state = result["state_dict"]
    assert state["linear.weight"].dtype == torch.float32 and torch.all(state["linear.weight"] == 3.5)
    assert state["scale16"].dtype == torch.float16 and torch.all(state["scale16"] == 3.5)
    assert state["norm.num_batches_tracked"].item() == 1  # copied from the first, not averaged
    loaded = Tiny.load_from_checkpoint(out)
    assert torch.all(loaded.linear.bias == 3.5) and loaded.hparams.width == 3


def test_average_of_random_state_dicts_is_exact(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    dicts = [{"w": torch.randn(4, 5, generator=generator), "i": torch.tensor([k])} for k in range(4)]
    paths = []
    for k, state in enumerate(dicts):
        paths.append(tmp_path / f"{k}.pt")
        torch.save(state, paths[-1])
    counts = average_checkpoints(paths, tmp_path / "avg.pt", progress=False)
    assert counts == {"checkpoints": 4, "averaged": 1, "copied": 1}
    result = torch.load(tmp_path / "avg.pt")
    expected = (sum(d["w"].double() for d in dicts) / 4).float()
    assert torch.equal(result["w"], expected) and result["i"].item() == 0
    assert not (tmp_path / "avg.pt.partial").exists()

    torch.save({"model": dicts[0]}, tmp_path / "sam2.pt")
    torch.save({"model": {**dicts[1], "w": dicts[1]["w"] + 2}}, tmp_path / "sam2b.pt")
    average_checkpoints([tmp_path / "sam2.pt", tmp_path / "sam2b.pt"], tmp_path / "sam2avg.pt", progress=False)
    result = torch.load(tmp_path / "sam2avg.pt")
    assert set(result) == {"model"}
    assert torch.equal(result["model"]["w"], ((dicts[0]["w"].double() + (dicts[1]["w"] + 2).double()) / 2).float())


def test_mismatches_name_the_file(tmp_path: Path) -> None:
    first = lightning_checkpoint(tmp_path / "a.ckpt", 1.0, step=1)
    wider = lightning_checkpoint(tmp_path / "b.ckpt", 1.0, step=1, width=4)
    with pytest.raises(DataError, match=r"b\.ckpt: 'linear\.weight' has shape \[4, 2\], \[3, 2\] in .*a\.ckpt"):
        average_checkpoints([first, wider], tmp_path / "out.ckpt", progress=False)
    state = torch.load(first, weights_only=False)["state_dict"]
    del state["scale16"]
    torch.save({"state_dict": {**state, "extra": torch.ones(1)}}, tmp_path / "c.ckpt")
    with pytest.raises(DataError, match=r"c\.ckpt: weights differ from .*a\.ckpt: missing \[.scale16.\], unexpected"):
        average_checkpoints([first, tmp_path / "c.ckpt"], tmp_path / "out.ckpt", progress=False)
    torch.save(state, tmp_path / "plain.pt")
    with pytest.raises(DataError, match=r"plain\.pt: weights are under None, not 'state_dict'"):
        average_checkpoints([first, tmp_path / "plain.pt"], tmp_path / "out.ckpt", progress=False)
    torch.save({"epoch": 3}, tmp_path / "empty.ckpt")
    with pytest.raises(DataError, match=r"empty\.ckpt: no weights found"):
        average_checkpoints([tmp_path / "empty.ckpt"], tmp_path / "out.ckpt", progress=False)
