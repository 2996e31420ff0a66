"""The research report: the notebooks executed by papermill into one run folder, and one HTML page
with the summary table (every model against its baselines, with confidence intervals) followed by
the executed notebooks.

Notebooks write their summary rows with `save_rows`; `render_html` collects them.
"""

from __future__ import annotations

import html
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = ("01_features", "02_forecast", "03_anomalies_archetypes", "04_regime", "05_copy_backtest")


def save_rows(out_dir: str | Path, name: str, rows: list[dict[str, object]]) -> Path:
    path = Path(out_dir) / "summary" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, default=str, indent=1))
    return path


def load_rows(out_dir: str | Path) -> pl.DataFrame:
    files = sorted((Path(out_dir) / "summary").glob("*.json"))
    rows = [r for f in files for r in json.loads(f.read_text())]
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()


@contextmanager
def _quiet_kernels(log: Path) -> Iterator[None]:
    """Kernels inherit our stderr and print their own start-up and shutdown chatter there (transport
    warnings, a KeyboardInterrupt on shutdown, native libraries' exit messages); papermill logs
    every step at INFO. Both go to the run's log file instead, so a person sees the progress lines
    and the failures we report, and the kernels' words stay on disk for when they matter."""
    papermill_log = logging.getLogger("papermill")
    level = papermill_log.level
    sys.stderr.flush()
    saved = os.dup(2)
    with log.open("ab") as sink:
        os.dup2(sink.fileno(), 2)
        papermill_log.setLevel(logging.WARNING)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            papermill_log.setLevel(level)


def run_notebooks(
    run_dir: Path,
    parameters: dict[str, object],
    *,
    notebooks: tuple[str, ...] = NOTEBOOKS,
    progress: Callable[[str], None] | None = None,
    kernel_name: str = "python3",
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Execute each notebook with `parameters` (plus out_dir = run_dir) into run_dir. A notebook
    that fails is still written (with its error) and the others still run; the failures are
    returned beside the executed paths as (name, error's last line)."""
    import papermill

    run_dir = run_dir.resolve()  # the kernels run inside it: relative paths would move with them
    run_dir.mkdir(parents=True, exist_ok=True)
    done, failed = [], []
    for name in notebooks:
        out = run_dir / f"{name}.ipynb"
        try:
            with _quiet_kernels(run_dir / "kernels.log"):
                papermill.execute_notebook(
                    str(NOTEBOOK_DIR / f"{name}.ipynb"),
                    str(out),
                    parameters={**parameters, "out_dir": str(run_dir)},
                    kernel_name=kernel_name,
                    progress_bar=False,
                    cwd=str(run_dir),
                )
        except papermill.PapermillExecutionError as exc:
            failed.append((name, f"{exc.ename}: {exc.evalue}"))
        done.append(out)
        if progress:
            progress(name)
    return done, failed


def render_html(
    run_dir: Path,
    executed: list[Path],
    *,
    failed: list[tuple[str, str]] | None = None,
    title: str = "Vanta research report",
) -> Path:
    """One HTML file: the summary table, then every executed notebook (inputs hidden, outputs kept)."""
    import nbformat
    from nbconvert import HTMLExporter

    rows = load_rows(run_dir)
    # nbconvert warns once per plot that it has no alternative text: true of every chart, not news.
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    exporter = HTMLExporter(template_name="basic")
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    parts = [
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}tr.miss td{background:#fde8e8}tr.win td{background:#e8f6e8}</style>",
        f"</head><body><h1>{html.escape(title)}</h1>",
        "<h2>Summary: every model against its baselines, out of sample</h2>",
        "<p>Walk-forward, out of sample; intervals are 95 % bootstrap intervals. A green row beats the "
        "baseline with its interval above zero (or meets the target); a red row does not.</p>",
        table_html(rows),
    ]
    for name, error in failed or []:
        parts.append(f"<p style='color:#a00'><b>{html.escape(name)} failed:</b> {html.escape(error)}</p>")
    for nb_path in executed:
        body, _ = exporter.from_notebook_node(nbformat.read(str(nb_path), as_version=4))
        parts.append(f"<hr><h2>{html.escape(nb_path.stem)}</h2>{body}")
    parts.append("</body></html>")
    out = run_dir / "report.html"
    out.write_text("\n".join(parts))
    return out


def table_html(rows: pl.DataFrame) -> str:
    if rows.is_empty():
        return "<p>No summary rows.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows.columns)
    body = []
    for r in rows.iter_rows(named=True):
        cls = "win" if r.get("better") else "miss"
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r.values())
        body.append(f"<tr class='{cls}'>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:,.1f}"
    return "" if v is None else str(v)
