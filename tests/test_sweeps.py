"""W&B sweep files: each command runs `samlab fit --config ...` with ${args}, and each parameter is a valid CLI key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from samlab.cli import main

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))


def _values(spec: dict) -> list:
    """Values a sweep parameter can take: its ``values``/``value``, or the ends of its distribution."""
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    return [spec["min"], spec["max"]]


def _configs(command: list[str]) -> list[str]:
    return [command[i + 1] for i, arg in enumerate(command) if arg == "--config"]


def test_there_are_sweeps():
    assert len(SWEEPS) >= 2


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.stem)
def test_sweep_parameters_are_valid_cli_keys(sweep, capsys):
    spec = yaml.safe_load(sweep.read_text())
    command = spec["command"]
    assert command[:2] == ["samlab", "fit"] and command[-1] == "${args}"
    assert spec["metric"]["goal"] in ("maximize", "minimize")
    configs = [str(REPO / c) for c in _configs(command)]
    assert configs and all(Path(c).exists() for c in configs)
    fixed = [arg for arg in command[2:-1] if arg.startswith("--trainer.")]
    for pick in (0, -1):  # every parameter at its first, then at its last value: two parser runs per sweep
        chosen = {key: _values(parameter)[pick] for key, parameter in spec["parameters"].items()}
        args = [f"--{key}={json.dumps(value)}" for key, value in chosen.items()]
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", *(x for c in configs for x in ("--config", c)), *fixed, *args, "--print_config"])
        assert exit_info.value.code == 0, f"{sweep.name}: {args} not accepted"
        printed = yaml.safe_load(capsys.readouterr().out)
        for key, value in chosen.items():
            node = printed
            for part in key.split("."):
                node = node[part]
            assert node == pytest.approx(value), f"{sweep.name}: {key} did not reach the config"


def test_a_wrong_key_is_refused(capsys):
    argv = ["fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--model.init_args.lrr=0.1", "--print_config"]
    assert main(argv) == 2  # a ConfigError: cause, config key and "did you mean", no traceback
    assert "did you mean 'lr'" in capsys.readouterr().err
