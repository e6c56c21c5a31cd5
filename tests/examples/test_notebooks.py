"""Every notebook in examples/ runs top to bottom on CPU, is stored without outputs and matches its script."""

from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).parents[2] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
IDS = [path.stem for path in NOTEBOOKS]


def test_the_examples_are_there():
    assert {"microscopy_10shot", "industrial_box_only"} <= set(IDS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_outputs_are_stripped(path):
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} cell {index} holds outputs: rewrite it from its script with "
                f"`jupytext --to ipynb {path.with_suffix('.py')}`"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_and_its_script_twin_match(path):
    notebook = nbformat.read(path, as_version=4)
    assert notebook.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    script = jupytext.read(path.with_suffix(".py"))
    cells = [(c.cell_type, c.source) for c in notebook.cells]
    assert [(c.cell_type, c.source) for c in script.cells] == cells, (
        f"{path.name} and {path.stem}.py differ: run `jupytext --sync {path}`"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_top_to_bottom_on_cpu(path, tmp_path, monkeypatch):
    # The kernel inherits this environment: offline, no GPU, the session's model cache.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    assert list(tmp_path.glob("runs/*/fit/lightning_logs/version_0/adapter/adapter_model.safetensors"))
    assert list(tmp_path.glob("runs/*/fit/lightning_logs/version_0/hub-adapter/README.md"))
    pictures = [
        cell
        for cell in notebook.cells
        if cell.cell_type == "code" and any("image/png" in out.get("data", {}) for out in cell.outputs)
    ]
    assert len(pictures) >= 2, "the samples and the overlay should show as pictures"
