"""The notebooks run under papermill on a small snapshot and the report collects their summaries."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from data.snapshots import write_duckdb
from research import report
from tests.conftest import SHARED_DATA
from tests.research.analyzer_fixtures import small_population


def test_notebooks_are_thin_and_parameterized() -> None:
    for name in report.NOTEBOOKS:
        nb = nbformat.read(str(report.NOTEBOOK_DIR / f"{name}.ipynb"), as_version=4)
        assert "parameters" in nb.cells[0].metadata.get("tags", []), name
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "def " not in code and "class " not in code and "lambda" not in code, name
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
            f"{name}: committed outputs"
        )


@pytest.mark.integration  # starts Jupyter kernels
def test_every_notebook_runs_under_papermill_into_one_report(tmp_path: Path) -> None:
    events, truth = small_population()
    snapshot = tmp_path / "small.duckdb"
    write_duckdb(snapshot, {"trade_events": events, "truth": truth})
    params = {
        "snapshot": str(snapshot),
        "as_of": None,
        "seed": 0,
        "label": "small",
        "prices_dir": str(SHARED_DATA / "prices") if (SHARED_DATA / "prices").exists() else "",
    }
    notebooks = (
        report.NOTEBOOKS if params["prices_dir"] else tuple(n for n in report.NOTEBOOKS if n != "04_regime")
    )
    executed, failed = report.run_notebooks(tmp_path / "run", params, notebooks=notebooks)
    assert failed == [], failed
    html = report.render_html(tmp_path / "run", executed, failed=failed).read_text()
    rows = report.load_rows(tmp_path / "run")
    models = set(rows["model"])
    assert {
        "copy score (LightGBM)",
        "7-day win (LightGBM)",
        "anomaly flags (loss hiding, wash trading)",
    } <= models
    assert "Summary: every model against its baselines" in html and "<img" in html
    assert all(f"<h2>{n}</h2>" in html for n in notebooks)
