"""Write the study's notebooks (without outputs): ``python notebooks/make_notebooks.py``.

The notebooks are thin: the experiment notebook calls :func:`dpdl.train.run`; the report notebooks call
:mod:`dpdl.study.tables` and :mod:`dpdl.study.figures`. Edit this script, not the .ipynb files.
"""
from __future__ import annotations

from pathlib import Path

import nbformat as nbf

from dpdl.model import PAPER_DEFAULTS


def _paper_defaults() -> str:
    """The parameter lines of the paper's hyper-parameters, from their one source (dpdl.model.PAPER_DEFAULTS)."""
    notes = {"prototypes": "C", "eps": "epsilon", "lam": "lambda"}
    return "\n".join(f"{k} = {PAPER_DEFAULTS[k]!r}" + (f"  # {notes[k]}" if k in notes else "")
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


def write(name, cells):
    nb = nbf.v4.new_notebook()
    nb.metadata.update(KERNEL)
    nb.cells = cells
    for i, c in enumerate(nb.cells):
        c["id"] = f"{Path(name).stem[:40]}-{i}"
    nbf.validate(nb)
    nbf.write(nb, HERE / name)


REPORT_PARAMS = '''profile = "cpu"
results_dir = "results"'''

SETUP = '''import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from dpdl.study import tables, figures

display(Markdown(f"*{tables.profile_caption(profile)}*"))
caption = tables.profile_caption(profile, short=True)   # the figures' caption'''


def experiment():
    write("experiment.ipynb", [
        md("""
# One run

Trains and tests one run of DPDL (or of a baseline: `method`) with :func:`dpdl.train.run` and leaves its record (`run.json`) beside this
notebook. The study (`dpdl study run`) executes this notebook with papermill, once per run; the parameters
below are the defaults of `dpdl.train.RunConfig`.
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
plot = True              # draw the score histogram below (the study turns it off unless --plots)'''.replace("@PAPER_DEFAULTS@", _paper_defaults()), tags=["parameters"]),
        code('''import os
if gpu is not None:
    os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
import torch
if threads:
    torch.set_num_threads(int(threads))
from dpdl.train import RunConfig, run

record = run(RunConfig(dataset=dataset, setting=setting, known_class=known_class, anomalies=anomalies, seed=seed,
                       profile=profile, backbone=backbone, method=method, method_options=method_options,
                       use_dpl=use_dpl, use_dfl=use_dfl, heads=heads,
                       prototypes=prototypes, eps=eps, kappa=kappa, lam=lam, data_root=data_root, out=out,
                       run_id=run_id), progress=False)
print(record["run_id"], record["status"], record.get("error") or "", record["metrics"], sep="  ")'''),
        md("Test scores of this run, normal vs anomaly (when the run saved them):"),
        code('''if plot:
    from dpdl.study.figures import score_histogram
    fig = score_histogram(out)'''),
    ])


REPORTS = {
    "report_table1_general.ipynb": ("Table 1 — general setting", """
Image-level AUC-ROC in the **general setting** (the test set holds every anomaly class; M = 10 or 1 anomalies
seen in training), our runs beside the paper's DPDL numbers. The paper claims DPDL is best or second best on all
nine datasets for both M. Baselines are the numbers the paper copied from DRA/AHL (*reported*, not run here).
MVTec AD is the mean of its 15 subsets (Table 5).""", '''df = tables.table1(profile, results_dir)
display(tables.styled(tables.display_frame(df), caption))''', '''figures.ours_vs_paper(df, "Table 1 — general setting: ours vs paper", caption=caption)
plt.show()'''),
    "report_table2_hard.ipynb": ("Table 2 — hard setting", """
Image-level AUC-ROC in the **hard setting**: the M seen anomalies all come from one known class, and the test set
holds only the *other* (unseen) classes; each dataset's value is the mean over its known classes (Table 6 lists
them). The paper claims DPDL generalises best to unseen anomaly classes.""", '''df = tables.table2(profile, results_dir)
display(tables.styled(tables.display_frame(df, extra_cols=("known_classes",)), caption))''', '''figures.ours_vs_paper(df, "Table 2 — hard setting: ours vs paper", caption=caption)
plt.show()'''),
    "report_table3_heads.ipynb": ("Table 3 — the three score heads", """
Ablation of the heads M_n (normal), M_a (anomaly) and M_r (residual/prototype): which of them score the image,
M = 10, general and hard setting. The paper claims removing M_r hurts most and that all three together are best.""",
                                  '''df = tables.table3(profile, results_dir)
display(tables.styled(tables.display_frame(df, index_cols=("setting", "dataset", "heads")), caption))''', '''figures.heads_ablation(df, caption=caption)
plt.show()'''),
    "report_table4_datasets.ipynb": ("Table 4 — dataset statistics", """
The number of anomaly classes, training normals, test normals and test anomalies of each dataset, counted from
the data by `dpdl.data.dataset_stats` (our protocol), beside the paper's Table 4. Datasets absent on this
machine are marked "not run here".""", '''df = tables.table4(profile, results_dir)
display(tables.styled(df.drop(columns=["key"]), caption))''', None),
    "report_table5_mvtec.ipynb": ("Table 5 — MVTec AD per subset", """
General setting on the 15 MVTec AD subsets (supplementary Table 5), and their mean (Table 1's MVTec AD row).
The paper claims DPDL is best on most subsets with one and ten seen anomalies.""", '''df = tables.table5(profile, results_dir)
display(tables.styled(tables.display_frame(df), caption))''', '''figures.ours_vs_paper(df, "Table 5 — MVTec AD subsets: ours vs paper", caption=caption)
plt.show()'''),
    "report_table6_hard_per_class.ipynb": ("Table 6 — hard setting per known class", """
The hard setting per known class (supplementary Table 6): the model sees M anomalies of one class and is tested
on the others. The per-dataset means are Table 2.""", '''df = tables.table6(profile, results_dir)
display(tables.styled(tables.display_frame(df, extra_cols=("known_class",)), caption))''', '''df["label"] = df["dataset"] + " / " + df["known_class"]
figures.ours_vs_paper(df, "Table 6 — hard setting per known class", label_col="label", caption=caption)
plt.show()'''),
    "report_fig2_ablation.ipynb": ("Fig. 2 — ablation of DPL and DFL", """
DPDL without its distribution-prototype learning (w/o DPL: no Schrödinger bridge to the prototypes) and without
dispersion feature learning (w/o DFL), M = 10, general and hard setting (hard: mean over known classes). The
paper gives no numbers for Fig. 2, only the claim that removing either part causes a clear AUC drop, largest
for w/o DPL on industrial datasets; below are our measurements.""", '''df = tables.fig2(profile, results_dir)
display(tables.styled(df.assign(**{"ours (mean ± std)": [tables.fmt_pm(m, s) for m, s in zip(df.ours_mean, df.ours_std)]})
        [["setting", "dataset", "label", "ours (mean ± std)", "n"]], caption))''', '''figures.ablation(df, caption=caption)
plt.show()'''),
    "report_fig3_sensitivity.ipynb": ("Fig. 3 — parameter sensitivity", """
AUC (general setting, M = 10) as one hyper-parameter varies with the others at the paper's values (C = 32,
ε = 1e-3, κ = 10, λ = 1; dashed lines). The paper gives no numbers for Fig. 3; it claims performance is stable
over a range, that too few or too many prototypes C hurt, that larger ε slowly degrades AUC, that κ above 10
can hurt, and that λ = 0.01 is best on larger datasets and λ = 1 on small ones.""", '''df = tables.fig3(profile, results_dir)
display(tables.styled(df.assign(**{"ours (mean ± std)": [tables.fmt_pm(m, s) for m, s in zip(df.ours_mean, df.ours_std)]})
        [["symbol", "value", "dataset", "ours (mean ± std)", "n"]], caption))''', '''figures.sensitivity(df, caption=caption)
plt.show()'''),
}


def reports():
    for name, (title, text, table, fig) in REPORTS.items():
        cells = [md(f"# {title}\n\n{text.strip()}"), code(REPORT_PARAMS, tags=["parameters"]), code(SETUP),
                 code(table)]
        if fig:
            cells.append(code(fig))
        write(name, cells)


if __name__ == "__main__":
    experiment()
    reports()
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("*.ipynb"))))
