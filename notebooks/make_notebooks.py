"""The one generator of the study's notebooks (without outputs): ``python notebooks/make_notebooks.py``.

The notebooks are thin: the experiment notebook calls :func:`dpdl.train.run`; every report notebook (the book's
pages, ``report_*.ipynb``) is a title, the papermill parameters and one call into :mod:`dpdl.book.pages` or
:mod:`dpdl.book.about`. Edit this script, not the .ipynb files; tests/test_notebooks.py checks that running it
changes nothing.
"""
from __future__ import annotations

from pathlib import Path

import nbformat as nbf

from dpdl.methods.dpdl.model import PAPER_DEFAULTS


def _paper_defaults() -> str:
    """The parameter lines of the paper's hyper-parameters, from their one source (dpdl.methods.dpdl.model.PAPER_DEFAULTS)."""
    notes = {"prototypes": "C", "eps": "epsilon", "lam": "lambda; None: the paper's per dataset (dpdl.methods.dpdl.model.paper_lam)"}
    values = {**PAPER_DEFAULTS, "lam": None}
    return "\n".join(f"{k} = {values[k]!r}" + (f"  # {notes[k]}" if k in notes else "")
                     for k in ("heads", "prototypes", "eps", "kappa", "lam"))

HERE = Path(__file__).resolve().parent
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}


def md(text):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text, tags=None):
    c = nbf.v4.new_code_cell(text.strip())
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def write(name, cells, out=None):
    nb = nbf.v4.new_notebook()
    nb.metadata.update(KERNEL)
    nb.cells = cells
    for i, c in enumerate(nb.cells):
        c["id"] = f"{Path(name).stem[:40]}-{i}"
    nbf.validate(nb)
    nbf.write(nb, Path(out or HERE) / name)


REPORT_PARAMS = '''profile = "cpu"          # which run records to report
results_dir = "results"  # the study's results folder'''

# name -> (title, text, the call that shows the page)
REPORTS = {
    # the first page: its answer, then the introduction (dpdl.book.pages.INTRO), then every claim
    "report_summary": ("Introduction", "", 'pages.show("summary", profile, results_dir)', "pages"),
    "report_table1_general": ("Table 1 — general setting", """
Image-level AUC-ROC in the **general setting** (the test set holds every anomaly class; M = 10 or 1 anomalies
seen in training), our runs beside the paper's DPDL numbers. The paper claims DPDL is best or second best on all
nine datasets for both M. Baselines marked *reported* are the numbers the paper copied from DRA/AHL; those marked *ours* ran here, in the same profile, and DPDL is compared with them on the same seeds.
MVTec AD is the mean of its 15 subsets (Table 5).""", 'pages.show("table1", profile, results_dir)', "pages"),
    "report_table2_hard": ("Table 2 — hard setting", """
Image-level AUC-ROC in the **hard setting**: the M seen anomalies all come from one known class, and the test set
holds only the *other* (unseen) classes; each dataset's value is the mean over its known classes (Table 6 lists
them). The paper claims DPDL generalises best to unseen anomaly classes.""", 'pages.show("table2", profile, results_dir)', "pages"),
    "report_table3_heads": ("Table 3 — the three score heads", """
Ablation of the heads $M_n$ (normal), $M_a$ (anomaly) and $M_r$ (residual/prototype): which of them score the image,
M = 10, general and hard setting. The paper claims that all three together are best, and (Sec. 5.6) that removing
$M_r$ hurts most. Table 3 cannot test the second: its four rows all keep $M_r$.""", 'pages.show("table3", profile, results_dir)', "pages"),
    "report_table4_datasets": ("Table 4 — dataset statistics", """
The number of anomaly classes, training normals, test normals and test anomalies of each dataset, counted from
the data by `dpdl.data.dataset_stats` (our protocol), beside the paper's Table 4. Datasets absent on this
machine are marked "not run here".""", 'pages.show("table4", profile, results_dir)', "pages"),
    "report_table5_mvtec": ("Table 5 — MVTec AD per subset", """
General setting on the 15 MVTec AD subsets (supplementary Table 5), and their mean (Table 1's MVTec AD row).
The paper claims DPDL is best on most subsets with one and ten seen anomalies.""", 'pages.show("table5", profile, results_dir)', "pages"),
    "report_table6_hard_per_class": ("Table 6 — hard setting per known class", """
The hard setting per known class (supplementary Table 6): the model sees M anomalies of one class and is tested
on the others. The per-dataset means are Table 2.""", 'pages.show("table6", profile, results_dir)', "pages"),
    "report_fig2_ablation": ("Fig. 2 — ablation of DPL and DFL", """
DPDL without its distribution-prototype learning (w/o DPL: no Schrödinger bridge to the prototypes) and without
dispersion feature learning (w/o DFL), M = 10, general and hard setting (hard: mean over known classes). The
paper gives no numbers for Fig. 2, only the claim that removing either part causes a clear AUC drop, largest
for w/o DPL on industrial datasets; our measurements with the frozen backbone of the profile are the tables and
figures below this section.

## When the backbone's last stage trains

On frozen features the DPL and DFL terms can only move the adapter's output. This diagnostic lets the features
move: the backbone's last stage (EfficientNet-Lite0 blocks 11–15) trains on top of the cached mid maps, all else
as in the `cpu` profile, under the code's default reading (the learnt bridge, λ per dataset), on ELPV's test cell
(general, M = 10): DPDL in full, without DPL and without DFL, paired by seed over five seeds. A fine-tuned step
costs many times a frozen one on this machine (4–7 minutes per run with two at a time, up to 43 minutes under
heavy load). It is a diagnostic: it reports and chooses
nothing.

How to read it:
- **Removing DPL lowers the mean AUC by more here than on frozen features.** Compare the frozen runs' paired
  difference for "w/o DPL" further down. The paired interval still holds 0: five seeds do not show an effect of
  DPL, even with moving features.
- **Removing DFL shows no effect either way.**
- **Fine-tuning the last stage lowers DPDL's AUC on this cell.** Compare its "full" row with the frozen runs of the
  same seeds in Table 1. So in this profile, letting the features move does not close the gap to the paper.

The older fine-tuning files (`elpv_cpu_finetune_last_{g1,g10}.json`, on the Performance page) and the GPU records in
`../shared/gpu_runs` were made with an **earlier DPDL reading** (the printed Eqs. 16–17, λ = 1).

```{include} ../../results/benchmarks/elpv_cpu_finetune_last_bridge.md
```""", 'pages.show("fig2", profile, results_dir)', "pages"),
    "report_fig3_sensitivity": ("Fig. 3 — parameter sensitivity", """
AUC (general setting, M = 10) as one hyper-parameter varies with the others at the paper's values (`dpdl.methods.dpdl.model.PAPER_DEFAULTS`;
dashed lines). The paper gives no numbers for Fig. 3; it claims performance is stable
over a range, that too few or too many prototypes C hurt, that larger ε slowly degrades AUC, that κ above 10
can hurt, and that λ = 0.01 is best on larger datasets and λ = 1 on small ones.

**What ε does here.** The runs use the reading of the [Method](../method.md) page (`dpl_loss="margin"`,
unit-norm bridge input): ε is the temperature of the soft minimum in the DPL distance $d$, the scale of α's
logits ($\\log\\alpha/\\epsilon$), and the variance $\\epsilon\\boldsymbol{\\sigma}_c$ of the prototype density that picks
$c^*$ in $M_r$'s residual. Under the printed reading ε had no effect by construction (the plan was one-hot and the
residual was the input itself; [Deviations](../deviations.md)), so its curve was flat; a flat ε curve below is a
measurement, not that artefact. Every record carries its reading (`dpdl_config`).

**The claims tested per dataset** (Sec. 5.7): C = 32 beats 8 and 64; the smallest ε beats the largest; κ = 10
beats the largest κ; λ = 0.01 beats the other values on the seven larger datasets and λ = 1 on BrainMRI and
HeadCT. The paper's figure covers nine datasets: each has a row below, run here or not.""", 'pages.show("fig3", profile, results_dir)', "pages"),
    "report_related": ("Related systems — results", """
ArcAD, ArcAD's base, HGAD and VPDM beside DPDL, DRA and kNN in every Table 1 and Table 2 cell: the same splits,
seeds, frozen features and training loop. The question: does any prototype-based method of DPDL's family beat DRA
and a plain kNN here? Each difference is paired over seeds with its 95 % interval; a method is "higher" in a cell only
where that interval lies above 0. The methods are explained on the [Related systems](../related.md) page.""",
                       "related.show(profile, results_dir)", "related"),
    "report_performance": ("Performance", """
Where the time goes: wall time per run (measured by `dpdl train` itself and stored in each run record's
`timings`), per study, the breakdown into steps, the profile choices measured on ELPV, and the benchmarks of
`benchmarks/` (stored in `results/benchmarks/*.json`), each with the command that measures it.""",
                           "about.show_performance(profile, results_dir)", "about"),
    "report_provenance": ("Provenance", """
Every number in this book comes from a run record `results/runs/<profile>/<run_id>/run.json` written by
`dpdl train` (through `dpdl study run`). This page lists them: what ran, on which code, on which split (the
fingerprint is a hash of the split's sample keys), when, and the one command that reruns each. The study never
recomputes a finished run: to rerun a group in place, delete its run folders and run the group again.""",
                          "about.show_provenance(profile, results_dir)", "about"),
}


def experiment(out=None):
    write("experiment.ipynb", [
        md("""
# One run (or a batch of runs)

Trains and tests one run of DPDL (or of a baseline: `method`) with :func:`dpdl.train.run` and leaves its record (`run.json`) beside this
notebook. The parameters below are the defaults of `dpdl.train.RunConfig`. The study (`dpdl study run`) executes
this notebook with papermill once per batch of runs of one dataset, given as `runs` (a list of `RunConfig`
keyword dicts, run one after the other in this kernel: its start-up and the dataset's features are paid once).
"""),
        code('''dataset = "synthetic"
setting = "general"      # "general" | "hard"
known_class = None       # hard setting: the seen anomaly class
anomalies = 10           # M, seen anomalies
seed = 0
profile = "smoke"        # "paper" | "cpu" | "smoke"
backbone = None          # None: the profile's backbone
method = "dpdl"          # "dpdl" | "devnet" | "dra" | "knn" (baselines under the same protocol)
method_options = {}      # more options of the method's config (dpdl.methods)
use_dpl = True
use_dfl = True
@PAPER_DEFAULTS@
data_root = None
out = "."                # output folder: run.json (+ model, scores)
run_id = None
gpu = None               # set by the study's executors: CUDA_VISIBLE_DEVICES for this run
threads = None           # set by the Dask executor: torch threads (1 per worker)
plot = True              # draw the score histogram below (the study turns it off unless --plots)
runs = None              # the study: a list of RunConfig keyword dicts, run in turn (the parameters above unused)'''.replace("@PAPER_DEFAULTS@", _paper_defaults()), tags=["parameters"]),
        code('''import os
if gpu is not None:
    os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
import torch
if threads:
    torch.set_num_threads(int(threads))
from dpdl.train import RunConfig, run

configs = [RunConfig(**r) for r in runs] if runs else [
    RunConfig(dataset=dataset, setting=setting, known_class=known_class, anomalies=anomalies, seed=seed,
              profile=profile, backbone=backbone, method=method, method_options=method_options,
              use_dpl=use_dpl, use_dfl=use_dfl, heads=heads, prototypes=prototypes, eps=eps, kappa=kappa, lam=lam,
              data_root=data_root, out=out, run_id=run_id)]
for cfg in configs:
    record = run(cfg, progress=False)
    print(record["run_id"], record["status"], record.get("error") or "", record["metrics"], sep="  ")'''),
        md("Test scores of this run, normal vs anomaly (when the run saved them):"),
        code('''if plot:
    from dpdl.study.figures import score_histogram
    fig = score_histogram(out)'''),
    ], out)


def reports(out=None):
    for name, (title, text, call, module) in REPORTS.items():
        write(f"{name}.ipynb", [md(f"# {title}\n\n{text.strip()}"), code(REPORT_PARAMS, tags=["parameters"]),
                                code(f"from dpdl.book import {module}\n\n{call}")], out)


def main(out=None):
    """Write every notebook into ``out`` (default: this folder)."""
    experiment(out)
    reports(out)


if __name__ == "__main__":
    main()
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("*.ipynb"))))
