"""Every notebook in notebooks/ runs top to bottom on the CPU (executed with nbclient in a scratch folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert {"quickstart", "data_exploration", "sam_prompt_coco", "masa", "directsam"} <= names  # one per family


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [out for cell in book.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("image/png" in out.get("data", {}) for out in outputs)  # overlays were drawn
    if path.stem == "quickstart":
        text = "".join(out.get("text", "") for out in outputs)
        assert "J&F before training" in text and "J&F after training" in text


@pytest.mark.slow
def test_documented_notebook_command_writes_only_ignored_outputs(tmp_path):
    """`make notebooks` (the README's command) runs `jupyter execute` in notebooks/: the notebook itself is left as it
    was, and what it writes lands in notebooks/data/, which git ignores."""
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    makefile = (repo / "Makefile").read_text()
    assert "notebooks:\n\tcd notebooks && $(abspath $(BIN))/jupyter execute --timeout=900 *.ipynb" in makefile
    assert "`make notebooks`" in (repo / "README.md").read_text()
    folder = tmp_path / "notebooks"
    folder.mkdir()
    book = folder / "data_exploration.ipynb"
    shutil.copy(repo / "notebooks" / book.name, book)
    before = book.read_bytes()
    jupyter = Path(sys.executable).parent / "jupyter"
    result = subprocess.run(
        [str(jupyter), "execute", "--timeout=900", book.name], cwd=folder, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert book.read_bytes() == before
    written = sorted(p.relative_to(folder).parts[0] for p in folder.rglob("*") if p.is_file() and p != book)
    assert written and set(written) == {"data"}
    probe = "notebooks/data/notebook_explore/x.png"
    ignored = subprocess.run(["git", "check-ignore", "-q", probe], cwd=repo, check=False)
    assert ignored.returncode == 0
