import json
import subprocess
import sys

import pytest

from samlab.cli import build_tool_parser, main, tools


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "data", "eval", "bench"):
        assert command in text


@pytest.mark.parametrize(
    "argv", [[tool.name] if tool.group is None else [tool.group, tool.name] for tool in tools()], ids=" ".join
)
def test_every_tool_has_a_useful_help(capsys, argv):
    """Every registered command parses ``--help`` and says more than its usage line."""
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    text = capsys.readouterr().out
    assert "usage: samlab " + " ".join(argv) in text
    assert len(text.splitlines()) > 5


def test_synth_then_stats_through_the_cli(tmp_path, capsys):
    out = tmp_path / "mose"
    assert (
        main(["data", "synth", "--format", "mose", str(out), "--videos", "2", "--frames", "4", "--size", "32", "48"])
        == 0
    )
    counts = json.loads(capsys.readouterr().out)
    assert counts["items"] == 2 and counts["annotated_frames"] == 8
    assert main(["data", "stats", "--format", "mose", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats == {k: counts[k] for k in stats}


def test_bad_dataset_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    assert main(["data", "stats", "--format", "mose", str(tmp_path / "missing")]) == 1
    assert "dataset folder does not exist" in capsys.readouterr().err


def test_bench_tools_print_json(tmp_path, capsys):
    out = tmp_path / "mose"
    main(["data", "synth", "--format", "mose", str(out), "--videos", "1", "--frames", "4", "--size", "32", "48"])
    capsys.readouterr()
    assert (
        main(
            [
                "bench",
                "data",
                "--format",
                "mose",
                str(out),
                "--num-frames",
                "2",
                "--size",
                "32",
                "--clips",
                "2",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["clips_per_s_per_worker"] > 0
    sa1b = tmp_path / "sa1b"
    main(["data", "synth", "--format", "sa1b", str(sa1b), "--videos", "3", "--size", "32", "48"])
    capsys.readouterr()
    assert main(["bench", "index", str(sa1b), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 3


def test_console_script_entry_point():
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from samlab.cli import main; sys.exit(main(['data', 'check', '--help']))"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "Exit status 1 when there is any problem" in " ".join(result.stdout.split())
    assert build_tool_parser().prog == "samlab"


def test_cli_reference_page_is_current():
    """docs/cli.md is the output of `python -m samlab.tools.cli_reference` (regenerate it when a command changes)."""
    from pathlib import Path

    from samlab.tools.cli_reference import cli_reference

    page = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    generated = cli_reference()
    assert "## samlab eval vos" in generated and "## samlab data synth" in generated
    assert page == generated, "docs/cli.md is stale: python -m samlab.tools.cli_reference > docs/cli.md"


def test_fit_help_lists_samlab_classes():
    """`samlab fit --help` (a fresh interpreter, as a user runs it) names every samlab LightningModule and
    LightningDataModule under "known subclasses" of --model and --data."""
    result = subprocess.run(
        [sys.executable, "-m", "samlab.cli", "fit", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = " ".join(result.stdout.split())
    model_help = text[text.rindex("--model CONFIG") : text.rindex("--data CONFIG")]
    for name in ("SAM2VideoModule", "SAMPromptModule", "MASAModule", "DirectSAMModule"):
        assert f"samlab.models.{name}" not in model_help  # listed with their real module path
        assert name in model_help
    data_help = text[text.rindex("--data CONFIG") :]
    for name in ("MOSEDataModule", "SAVDataModule", "SA1BDataModule", "COCODataModule", "MixedDataModule"):
        assert f"samlab.data.datamodules.{name}" in data_help
    assert "MASAPairDataModule" in data_help and "BoundaryDataModule" in data_help
