"""The study's notebooks: made by one generator (regenerating changes nothing), committed without outputs,
parameterised, thin, and the report notebooks execute (papermill) on the smoke results."""
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from dpdl.paths import REPO_ROOT

NB = REPO_ROOT / "notebooks"
REPORTS = sorted(p.stem for p in NB.glob("report_*.ipynb"))
EXPERIMENT_PARAMS = {"dataset", "setting", "known_class", "anomalies", "seed", "profile", "backbone", "use_dpl",
                     "use_dfl", "heads", "prototypes", "eps", "kappa", "lam", "data_root", "out", "run_id"}


def params_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    return cells[0].source


@pytest.mark.parametrize("name", ["experiment"] + REPORTS)
def test_committed_without_outputs_and_parameterised(name):
    nb = nbformat.read(NB / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    for c in nb.cells:
        if c.cell_type == "code":
            assert not c.outputs and c.execution_count is None, f"{name}: outputs committed"
    src = params_cell(nb)
    names = {line.split("=")[0].strip() for line in src.splitlines() if "=" in line}
    if name == "experiment":
        assert EXPERIMENT_PARAMS <= names
    else:
        assert names == {"profile", "results_dir"}
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
        # thin: a title, the parameters and one call into dpdl.book (the page's logic lives in the package)
        code = [c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
        assert len(nb.cells) == 3 and len(code) == 1
        lines = [ln for ln in code[0].source.splitlines() if ln.strip()]
        assert len(lines) == 2 and lines[0].startswith("from dpdl.book import")


def test_every_report_notebook_is_listed_and_covered():
    from dpdl import book

    assert set(REPORTS) == set(book.report_notebooks(REPO_ROOT / "_toc.yml"))   # every page of the book
    assert {"report_summary", "report_provenance", "report_performance"} <= set(REPORTS)


def test_regenerating_the_notebooks_changes_nothing(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_notebooks", NB / "make_notebooks.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.main(tmp_path)
    made = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    assert made == sorted(p.name for p in NB.glob("*.ipynb"))
    for name in made:
        assert (tmp_path / name).read_bytes() == (NB / name).read_bytes(), f"{name} differs from its generator"


@pytest.mark.slow
def test_report_notebooks_execute_on_smoke_results(tmp_path_factory, tmp_path):
    import papermill as pm
    from test_study_sweep import make_smoke_results

    from dpdl.kernels import papermill_kwargs

    results = make_smoke_results(tmp_path_factory)

    def run(name):
        out = tmp_path / f"{name}.ipynb"
        pm.execute_notebook(str(NB / f"{name}.ipynb"), str(out), parameters={"profile": "smoke",
                            "results_dir": str(results)}, kernel_name="python3", progress_bar=False,
                            cwd=str(tmp_path), **papermill_kwargs())  # two at once: no TCP port race
        return out

    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = list(pool.map(run, REPORTS))
    for out in outs:
        nb = nbformat.read(out, as_version=4)
        kinds = [o.get("output_type") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert "error" not in kinds
        text = json.dumps(nb)
        if out.stem in ("report_table1_general", "report_table2_hard", "report_fig2_ablation", "report_fig3_sensitivity",
                        "report_table3_heads"):
            assert "image/png" in text                        # the smoke study ran these: a figure is drawn
