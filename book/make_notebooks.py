"""Write the book's own report notebooks (without outputs): ``python book/make_notebooks.py``.

notebooks/report_summary.ipynb (the Introduction), report_provenance.ipynb and report_performance.ipynb are
thin: they call :mod:`dpdl.book`. Edit this script, not the .ipynb files. ``dpdl book build`` executes them
with papermill (parameters ``profile`` and ``results_dir``) and heads each page with the profile banner.
"""
from pathlib import Path

import nbformat as nbf
from nbformat.v4 import new_notebook, new_markdown_cell as md, new_code_cell as code

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def nb(cells, path):
    n = new_notebook(cells=cells)
    n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    n.metadata["language_info"] = {"name": "python"}
    stem = Path(path).stem
    for i, c in enumerate(n.cells):
        c["id"] = f"{stem[:40]}-{i}"
    nbf.validate(n)
    nbf.write(n, path)

params = code('profile = "cpu"        # which run records to report\nresults_dir = "results"  # the study\'s results folder')
params.metadata["tags"] = ["parameters"]

setup = code('''from pathlib import Path
import pandas as pd
from IPython.display import Markdown, display
from dpdl import book

pd.set_option("display.max_rows", 500, "display.max_colwidth", 200)
results = Path(results_dir)
records = book.load_records(results, profile)''')

summary = [
md("""# Introduction

**DPDL** (*Distribution Prototype Diffusion Learning for Open-set Supervised Anomaly Detection*, CVPR 2025)
detects anomalies from image-level labels when only a few anomalies, of a few classes, are seen in training and
the test set holds unseen classes too. It learns a mixture of Gaussian *distribution prototypes* for normal
features and a Schrödinger bridge that carries normal features to them while pushing the seen anomalies away
(DPL), adds a hyperspherical *dispersion* loss on the features (DFL), and scores images with three MIL heads
(see [Method](../method.md)). The paper claims state-of-the-art AUC on nine public datasets, in the *general*
setting (anomalies drawn from all classes) and the *hard* setting (one known anomaly class), with ten or one
training anomalies, and ablations (Fig. 2, Table 3, Fig. 3) that credit each component.

This book is a reproduction of those claims from scratch (the authors published no code): every number below is
computed from this study's run records and from the paper's tables (transcribed as CSV); nothing is typed by
hand. The headline answer comes first, then how it is computed."""),
params, setup,
md("## The answer"),
code('''table = book.summary_table(records=records, profile=profile)
sentence = book.verdict_sentence(table, profile)
try:
    from myst_nb import glue
    glue("headline", sentence, display=False)
except ImportError:
    pass
display(Markdown("**" + sentence + "**"))'''),
md("## What the paper claims, in its own tables"),
code('''t1 = book.load_paper_table("table1_general").assign(setting="general")
t2 = book.load_paper_table("table2_hard").assign(setting="hard")
paper = pd.concat([t1, t2], ignore_index=True)
best = paper.loc[paper.groupby(["setting", "dataset", "n_anomalies"])["auc_mean"].idxmax()]
n_best = int((best["method"] == "DPDL").sum())
not_best = best[best["method"] != "DPDL"]
msg = (f"In the paper's Tables 1–2, DPDL has the highest mean AUC in {n_best} of {len(best)} "
       f"dataset/setting/M cells")
if len(not_best):
    msg += "; the exceptions are " + ", ".join(
        f"{r.dataset} ({r.setting}, M={r.n_anomalies}: {r.method})" for r in not_best.itertuples())
display(Markdown(msg + "."))'''),
md("## What this study ran, and on what"),
code('''ok = records[records["status"] == "ok"]
keep = ("device", "device_name", "cpu_count", "threads", "torch")
hosts = pd.DataFrame([{k: (r.get("host") or {}).get(k) for k in keep if k in (r.get("host") or {})}
                      for r in records["record"]])
lines = [f"- run records of the **{profile}** profile: {len(records)} ({len(ok)} finished, "
         f"{int((records['status'] == 'failed').sum())} failed)"]
if len(records):
    lines.append(f"- datasets: {', '.join(sorted(records['dataset'].dropna().unique()))}")
    lines.append(f"- variants: {', '.join(sorted(records['variant'].dropna().unique()))}")
    lines.append(f"- backbones: {', '.join(sorted(records['backbone'].dropna().unique()))}")
    if not hosts.empty:
        hw = hosts.drop_duplicates().astype(str).to_dict("records")
        lines.append("- hardware: " + "; ".join(", ".join(f"{k} {v}" for k, v in h.items()) for h in hw))
    lines.append(f"- code versions: {', '.join(sorted(records['code_version'].dropna().unique()))}")
    lines.append(f"- dates: {records['date'].min()} to {records['date'].max()}")
display(Markdown("\\n".join(lines)))'''),
md("""The profile's settings are listed on the {ref}`Provenance page <profiles>`; every run record behind a
number is listed there too, with the command that reruns it."""),
md("## Dataset by dataset"),
code('''rule = (f"**Rule.** For each dataset, setting and number of training anomalies M of the paper's Tables 1–2, "
        f"*ours* is the mean ± std over seeds of the full model's AUC (MVTec AD: the mean over its subsets run "
        f"here; hard setting: the mean over the known classes run here). The verdict is **supports** when our mean "
        f"is at most {book.TOLERANCE} below the paper's DPDL mean (or above it); **below paper, above baselines** "
        f"when it is lower than that but above the best baseline the paper reports; **below baselines** otherwise; "
        f"**not run here** when this study has no finished run for the cell.")
display(Markdown(rule))'''),
code('''def pm(m, s):
    return "" if pd.isna(m) else f"{m:.3f} ± {s:.3f}"
view = pd.DataFrame({
    "dataset": table["dataset"], "setting": table["setting"], "M": table["M"],
    "ours": [pm(m, s) for m, s in zip(table["ours_mean"], table["ours_std"])],
    "seeds": table["seeds"], "coverage": table["coverage"],
    "paper DPDL": [pm(m, s) for m, s in zip(table["paper_dpdl_mean"], table["paper_dpdl_std"])],
    "ours − paper": table["diff_vs_paper"].map(lambda d: "" if pd.isna(d) else f"{d:+.3f}"),
    "best baseline": [f"{b} {m:.3f}" for b, m in zip(table["best_baseline"], table["best_baseline_mean"])],
    "verdict": table["verdict"]})
book.styled(view)'''),
md("## Runs without a counterpart in the paper"),
code('''other = book.other_runs_table(records=records, profile=profile)
if other.empty:
    display(Markdown("None."))
else:
    display(book.styled(other))'''),
md("""## The pages

- [Method](../method.md): the model, the bridge derivation we implement, and the equation → code map.
- [Data](../data.md): datasets, protocol and data root; Table 4.
- The results: Tables 1–6, Fig. 2 and Fig. 3, each beside the paper's numbers.
- [Deviations](../deviations.md), [Performance](report_performance.ipynb), [Provenance](report_provenance.ipynb)."""),
]

prov = [
md("""# Provenance

Every number in this book comes from a run record `results/runs/<profile>/<run_id>/run.json` written by
`dpdl train` (through `dpdl study run`). This page lists all of them: what ran, on which code, on which split
(the fingerprint is a hash of the split's sample keys), when, and the one command that reruns it."""),
params, setup,
md("## Run records"),
code('''prov = book.provenance_table(records=records, profile=profile)
if prov.empty:
    display(Markdown(f"No run records under `{results / 'runs' / profile}` yet."))
else:
    if prov["error"].isna().all():
        prov = prov.drop(columns=["error"])
    display(book.styled(prov, {"auc": "{:.4f}"}))'''),
md("""## Rerunning

Each row's `command` reruns that run alone into `reruns/<profile>/<run_id>/`, so that its `run.json` can be
compared with the record above (datasets other than ELPV, BrainMRI, SDD and synthetic also need `--data-root` or
`DPDL_DATA`). The study never recomputes a finished run: to rerun a whole group of the study in place, delete its
run folders under `results/runs/<profile>/` and run the group again:

```bash
dpdl study run --profile PROFILE --only GROUP
dpdl study status --profile PROFILE
```"""),
code('''groups = {}
for rid, g in zip(records["run_id"], records["groups"]):
    for name in filter(None, str(g or "").split(",")):
        groups.setdefault(name, []).append(rid)
try:
    from dpdl.study.plan import GROUPS as order
except Exception:
    order = sorted(groups)
rows = [{"group": g, "runs": len(groups.get(g, [])),
         "command": f"dpdl study run --profile {profile} --only {g}"} for g in order]
display(book.styled(pd.DataFrame(rows)))
status = records.groupby(["dataset", "variant", "status"], dropna=False).size().rename("runs").reset_index()
display(book.styled(status))'''),
md("""(profiles)=
## Profiles

The settings of each profile, read from `dpdl.config.PROFILES` (the code the runs used; every run record also
stores its profile's fields)."""),
code('''from dpdl.config import PROFILES
prof = pd.DataFrame([p.to_dict() for p in PROFILES.values()]).set_index("name").T
prof.index.name = "field"
book.styled(prof.reset_index().astype(str))'''),
]

perf = [
md("""# Performance

Where the time goes: wall time per run (measured by `dpdl train` itself and stored in each run record's
`timings`), per study (the sum over run records), the breakdown into steps, and the benchmarks of
`benchmarks/` (stored in `results/benchmarks/*.json`), each with the command that measures it."""),
params, setup,
code('''perf = book.performance_tables(records=records, results=results, profile=profile)
per_run = perf["per_run"]
if per_run.empty or "total_s" not in per_run:
    display(Markdown("Per-run timings: not measured yet (no run records with `timings`)."))'''),
md("## Per study"),
code('''if "study" in perf:
    display(Markdown(f"Measured by `dpdl study run --profile {profile}`: each run's wall time (its experiment "
                     "notebook, kernel start included: `study.notebook_s` of the record) and the time inside "
                     "`dpdl train` (`timings.total_s`). The local executor runs `--jobs` notebooks at a time "
                     "on a CPU (default: the cores divided by the profile's torch threads, so 2 for the cpu "
                     "profile on 2 cores) and one per GPU, so the study's wall time is about the sum of the run "
                     "wall times divided by that number."))
    display(book.styled(perf["study"]))
else:
    display(Markdown("Not measured yet."))'''),
md("## Per dataset and per run"),
code('''if "per_dataset" in perf:
    display(Markdown("In-process time of `dpdl train` (`timings.total_s`), seconds."))
    display(book.styled(perf["per_dataset"], precision=2))
    display(book.styled(per_run))
else:
    display(Markdown("Not measured yet."))'''),
md("## Step-time breakdown"),
code('''if "breakdown" in perf:
    import matplotlib.pyplot as plt
    br = perf["breakdown"]
    display(Markdown("Mean over runs: feature extraction (or cache reads), training, testing, the rest of "
                     "`dpdl train`, and the notebook's own overhead."))
    display(book.styled(br, {"mean_s": "{:.3f}", "share of total_s": "{:.1%}"}))
    if "steps" in perf:
        display(Markdown("One training step (`timings.step_*_ms`, mean over runs):"))
        display(book.styled(perf["steps"], {"mean_ms": "{:.2f}"}))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(br) + 1.2))
    ax.barh(br["part"], br["mean_s"])
    ax.invert_yaxis()
    ax.set_xlabel("mean seconds per run")
    ax.set_title(f"Where a run's time goes ({profile} profile)")
    fig.tight_layout()
    plt.show()
else:
    display(Markdown("Not measured yet."))'''),
md("""## Choices measured on ELPV

Where the paper is silent, or where the `cpu` profile departs from it, the choice was measured on every ELPV
target cell (general and hard, M = 10 and M = 1, seeds 0–4; hard pools the mono and poly known classes, as
Table 2 averages them): $\\mathcal{L}_{\\mathrm{binary}}$ as binary cross-entropy (`bce`) or as DevNet's
deviation loss (`deviation`); the training feature maps left as they are or randomly rotated and flipped
(`d4`); and, on the chosen pair, the paper's learning rate $2\\times10^{-4}$ and a larger pseudo-anomaly share.
Measured by `python benchmarks/bench_elpv_cpu.py choices --only NAME --seeds 0,1,2,3,4`; the Deviations page
says which the profile uses."""),
code('''choices = book.choice_table(results)
if "error" in choices:
    broken = choices[choices["error"].notna()]
    for _, row in broken.iterrows():
        display(Markdown(f"`{row['file']}`: {row['error']}"))
    choices = choices[choices["error"].isna()]
if choices.empty:
    display(Markdown("Not measured yet: no `results/benchmarks/elpv_cpu_choice_*.json`."))
else:
    import matplotlib.pyplot as plt
    display(book.styled(choices, {"AUC mean": "{:.3f}", "AUC sd": "{:.3f}", "paper DPDL": "{:.3f}",
                                  "best baseline": "{:.3f}"}))
    cells = list(dict.fromkeys(choices["cell"]))
    names = list(dict.fromkeys(choices["choice"]))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        d = choices[choices["choice"] == name].set_index("cell").reindex(cells)
        ax.bar([c + i * width for c in range(len(cells))], d["AUC mean"], width, yerr=d["AUC sd"], capsize=2,
               label=name)
    ref = choices.drop_duplicates("cell").set_index("cell").reindex(cells)
    for c, cell in enumerate(cells):
        ax.hlines(ref.loc[cell, "best baseline"], c - 0.1, c + 0.9, colors="k", linestyles="--",
                  label="best baseline (paper)" if c == 0 else None)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(cells))], cells)
    ax.set_ylabel("AUC (mean ± sd over seeds)")
    ax.set_ylim(0.5, 1.0)
    ax.set_title("ELPV, cpu profile: the measured choices")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    plt.show()'''),
md("## Benchmarks (feature cache, step times)"),
code('''if not perf["benchmarks"]:
    display(Markdown(f"Not measured yet: no `{results / 'benchmarks'}/*.json`. "
                     "The scripts in `benchmarks/` write them."))
for name, data in perf["benchmarks"]:
    cmd = data.get("command") if isinstance(data, dict) else None
    display(Markdown(f"### `{name}`\\n\\nMeasured by: `{cmd or 'see benchmarks/'}`"
                     + (f" (code {data.get('code_version')}, {data.get('date')})" if isinstance(data, dict) else "")))
    flat = pd.json_normalize(data) if isinstance(data, dict) else pd.DataFrame(data)
    if len(flat) == 1:
        flat = flat.T.reset_index().rename(columns={"index": "field", 0: "value"}).astype(str)
    display(book.styled(flat))'''),
]

nb(summary, NOTEBOOKS / "report_summary.ipynb")
nb(prov, NOTEBOOKS / "report_provenance.ipynb")
nb(perf, NOTEBOOKS / "report_performance.ipynb")
