"""The study's notebooks: committed without outputs, parameterised, and the report notebooks execute (papermill)
on the smoke results."""
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from dpdl.paths import REPO_ROOT

NB = REPO_ROOT / "notebooks"
REPORTS = ["report_table1_general", "report_table2_hard", "report_table3_heads", "report_table4_datasets",
           "report_table5_mvtec", "report_table6_hard_per_class", "report_fig2_ablation", "report_fig3_sensitivity"]
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
        assert len(nb.cells) <= 6


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
        assert "profile: smoke" in text                       # every page states its profile
        if "table4" not in out.name:
            assert "image/png" in text                        # and draws its figure
