"""The notebooks: each .py (jupytext percent format) has its .ipynb pair, committed without outputs, and
executes top to bottom in a Jupyter kernel of this environment, in fast mode (HIERPOOL_NOTEBOOK_FAST=1:
smaller sizes, the same code), producing its plots and its closing text."""

from __future__ import annotations

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# notebook: (least number of PNG images it must produce, text its outputs must contain)
EXPECTED = {
    "01_shrinkage_vs_ridge": (5, ["Implied lam:", "**Inference.**", "**Prediction for new counties.**",
                                  "Same point estimates at the same penalty"]),
    "02_ranking_groups": (7, ["members have a raw readmission rate of 100%", "Efron-Morris: partial pooling",
                              "Posterior predictive checks"]),
    "03_a_million_members": (2, ["cover the truth for", "GroupedStats", "fit from the statistics"]),
    "04_features_for_a_next_stage_model": (2, ["of one-episode members keep their raw outcome", "**The leak.**",
                                               "Closing: the encoders compared"]),
    "05_profiling": (7, ["false-flag rate", "**Reading the table**", "**Radon.**",
                         "Closing: profiling compared against the truth"]),
}


def test_every_notebook_is_a_pair_without_outputs():
    pys = sorted(p.stem for p in NOTEBOOKS.glob("*.py"))
    assert pys == sorted(EXPECTED)
    for stem in pys:
        py = jupytext.read(NOTEBOOKS / f"{stem}.py")
        ipynb = jupytext.read(NOTEBOOKS / f"{stem}.ipynb")
        assert [c.source for c in py.cells] == [c.source for c in ipynb.cells], f"{stem}: pair out of sync"
        assert [c.cell_type for c in py.cells] == [c.cell_type for c in ipynb.cells]
        for c in ipynb.cells:
            if c.cell_type == "code":
                assert c.outputs == [] and c.execution_count is None, f"{stem}.ipynb holds outputs"
        assert "py:percent" in py.metadata["jupytext"]["formats"]


def _texts(nb) -> str:
    out = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            out.append(cell.source)
            continue
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(o.get("text", ""))
            data = o.get("data", {})
            out.extend(str(data[k]) for k in ("text/plain", "text/markdown", "text/html") if k in data)
    return "\n".join(out)


@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_notebook_executes(stem, tmp_path, monkeypatch):
    monkeypatch.setenv("HIERPOOL_NOTEBOOK_FAST", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend makes the PNGs
    nb = jupytext.read(NOTEBOOKS / f"{stem}.py")
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if a cell fails
    n_png = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                for o in c.outputs)
    min_png, phrases = EXPECTED[stem]
    assert n_png >= min_png, f"{stem}: {n_png} plots, expected at least {min_png}"
    text = _texts(nb)
    for phrase in phrases:
        assert phrase in text, f"{stem}: {phrase!r} not in the outputs"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
