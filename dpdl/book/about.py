"""The pages about the numbers: Provenance (every run record and its rerun command) and Performance (where the
time goes, the profile choices measured on ELPV, the benchmarks). Per-run tables and raw JSON are collapsed."""
from __future__ import annotations

import json

import pandas as pd

from ..study.analysis import default_results_dir, load_runs
from . import render
from .pages import _display, _md
from .records import RUN_STEPS, choice_table, diagnostic_table, performance_tables, provenance_table, step_table
from .render import collapsed, styled


def show_provenance(profile: str = "cpu", results_dir=None) -> None:
    """Run records by group (with the command that reruns a group), every record (collapsed), the profiles."""
    from ..config import PROFILES
    from ..study.plan import GROUPS

    runs = load_runs(profile, results_dir, include_failed=True, include_outdated=True)
    if runs.empty:
        _display(_md(render.not_run_line(f"run records of the {profile} profile",
                                         f"dpdl study run --profile {profile}")))
    else:
        groups = {g: int(runs["groups"].fillna("").str.split(",").map(lambda x, g=g: g in x).sum()) for g in GROUPS}
        rows = [{"group": g, "runs": n, "command": f"dpdl study run --profile {profile} --only {g}"}
                for g, n in groups.items()]
        status = runs.groupby(["method", "dataset", "variant", "status"], dropna=False).size().rename("runs")
        _display(_md("## Run records\n\nBy study group (a run may serve several groups):"), styled(pd.DataFrame(rows)),
                 collapsed(f"Runs by method, dataset, variant and status ({len(status)} rows)",
                           styled(status.reset_index())))
        prov = provenance_table(results_dir, profile, records=runs)
        if prov["error"].isna().all():
            prov = prov.drop(columns=["error"])
        _display(_md("Every record, with the one command that reruns it into `reruns/<profile>/<run_id>/` (datasets "
                     "other than ELPV, BrainMRI, SDD and synthetic also need `--data-root` or `DPDL_DATA`):"),
                 collapsed(f"All {len(prov)} run records of the {profile} profile",
                           styled(prov, {"auc": "{:.4f}"})))
    prof = pd.DataFrame([p.to_dict() for p in PROFILES.values()]).set_index("name").T
    prof.index.name = "field"
    _display(_md("## Profiles\n\nThe settings of each profile, read from `dpdl.config.PROFILES` (every "
                 "run record also stores its profile's fields)."), styled(prof.reset_index().astype(str)))


def show_performance(profile: str = "cpu", results_dir=None) -> None:
    """Per study, per dataset, the step breakdown (visible); per run and the raw benchmarks (collapsed)."""
    import matplotlib.pyplot as plt

    results = default_results_dir(results_dir)
    perf = performance_tables(results, profile)
    if "study" not in perf:
        _display(_md(render.not_run_line(f"timed run records of the {profile} profile",
                                         f"dpdl study run --profile {profile}")))
    else:
        study = perf["study"].T.reset_index()
        study.columns = ["measure", "value"]
        study["value"] = [render.num(v, 2) if isinstance(v, float) else str(v) for v in study["value"]]
        _display(_md("## Per study\n\nEach run's wall time (its share of its batch's experiment notebook, kernel "
                     "start included: the study runs up to `--batch` runs of a dataset per kernel) and the time "
                     "inside `dpdl train`; the local executor runs `--jobs` batches at a time, so the study's wall "
                     "time is about the sum of the run wall times divided by that number."),
                 styled(study),
                 _md("## Per dataset\n\nIn-process time of `dpdl train`, seconds."),
                 styled(perf["per_dataset"].rename(columns={"median_s": "median (s)", "mean_s": "mean (s)",
                                                            "sum_s": "sum (s)"}), precision=1),
                 collapsed(f"Per run ({len(perf['per_run'])} runs)", styled(perf["per_run"], precision=2)))
        br = perf["breakdown"]
        _display(_md(f"## Step-time breakdown\n\nMean over the {br.attrs.get('runs', len(perf['per_run']))} runs "
                     f"that time every step ({', '.join(RUN_STEPS)}), every part over the same runs."),
                 styled(br.rename(columns={"mean_s": "mean (s)"}), {"mean (s)": "{:.3f}", "share of total_s": "{:.1%}"}))
        if "steps" in perf:
            _display(collapsed("One training step (ms, mean over runs)", styled(perf["steps"], precision=2)))
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(br) + 1.2))
        ax.barh(br["part"], br["mean_s"])
        ax.invert_yaxis()
        ax.set_xlabel("mean seconds per run")
        ax.set_title("Where a run's time goes")
        fig.tight_layout()
        plt.show()
    steps = step_table(results)
    _display(_md("## One training step per method\n\nEvery trained method on the same batch of the cpu profile's maps, "
                 "one process, one thread: milliseconds per step (adapter, losses, backward, optimiser step), wall "
                 "clock and the thread's CPU time (the steadier on a loaded machine), each as a ratio to DevNet's "
                 f"step (the target of issue 21: at most {steps.attrs.get('target') or 1.5}×), beside the FLOPs of the "
                 "shared adapter's forward and backward pass. The compiled columns, where present, time the same "
                 "step with the method's losses under `torch.compile` (CPU inductor) and give the relative difference "
                 "of the first step's loss from eager (methods that draw random numbers in their losses, ArcAD's "
                 "synthesis and VPDM's noise, draw other numbers when compiled): a measurement of whether compiling "
                 "would pay, not what the study runs (it runs eager).\n\n"
                 "The FLOP columns count the whole step's matrix products and convolutions (torch's flop counter; "
                 "elementwise work counts nothing) and the rate the step achieves on them. *FLOPs × DevNet's* is the "
                 "ratio the step would have at DevNet's efficiency; *at peak × DevNet* the ratio its counted FLOPs "
                 "would have at this core's float32 matrix-product peak (a bound for these FLOPs: a rewrite that "
                 "changes the FLOPs moves it). A rate near DevNet's means the step's cost is its model's arithmetic; "
                 "a rate far below it means elementwise work, small or float64 matrix products: time a rewrite may "
                 "win back."))
    if len(steps):
        if "at peak × DevNet" in steps:
            _step_figure(steps, steps.attrs.get("target") or 1.5, steps.attrs.get("peak"))
        _display(styled(steps, precision=2), _md(f"Measured by `{steps.attrs.get('command')}` (code "
                                                 f"{steps.attrs.get('code_version')}, {steps.attrs.get('date')}, "
                                                 f"load average {steps.attrs.get('load')})."))
        _display(_md(step_verdict(steps, results)))
    else:
        _display(_md(render.not_run_line("the step benchmark", "python benchmarks/bench_step_cpu.py")))
    show_gpu(results)
    show_choices(results)
    diag = diagnostic_table(results)
    _display(_md("## Diagnostic: fine-tuning the last backbone stage\n\nThe last stage (blocks 11–15) of the "
                 "backbone fine-tuned on top of the cached mid maps, all else as in the `cpu` profile, on ELPV test cells "
                 "(`python benchmarks/bench_elpv_finetune.py`); a file with a frozen arm pairs it with frozen runs of "
                 "the same seeds. Files made before the `bridge` reading ran another DPDL reading (their `reading` "
                 "column); the Fig. 2 page shows the one under the current reading."))
    _display(styled(diag, {"AUC mean": "{:.3f}", "step (ms)": "{:.0f}"}) if len(diag) else _md(render.not_run_line(
        "the fine-tuning diagnostic", "python benchmarks/bench_elpv_finetune.py --cells general:1 --seeds 0,1,2")))
    _display(_md("## Benchmarks (feature cache, step times)"))
    if not perf["benchmarks"]:
        _display(_md(render.not_run_line("benchmarks", "python benchmarks/<script>.py (see benchmarks/)")))
    for name, data in perf["benchmarks"]:
        cmd = data.get("command") if isinstance(data, dict) else None
        _display(_md(f"`{name}`, measured by `{cmd or 'see benchmarks/'}`"
                     + (f" (code {data.get('code_version')}, {data.get('date')})" if isinstance(data, dict) else "")),
                 collapsed(f"{name}: the raw JSON", json.dumps(data, indent=1)[:20000]))


def step_verdict(steps, results) -> str:
    """What the step benchmark and the study-time projection say about issue 21's targets, in words, from their
    files: which methods meet the step target, which cannot with the FLOPs they have, and the study's time."""
    target = steps.attrs.get("target") or 1.5
    others = steps[steps["method"] != "DevNet"]
    meet = sorted(others.loc[others["CPU × DevNet"] <= target, "method"])
    out = [f"**The targets (cpu profile).** {', '.join(meet) or 'No method but DevNet itself'} "
           f"{'meets' if len(meet) <= 1 else 'meet'} the step target of {target:g}× DevNet's step."]
    if "at peak × DevNet" in steps:
        beyond = sorted(others.loc[others["at peak × DevNet"] > target, "method"])
        if beyond:
            out.append(f"For {', '.join(beyond)} the counted FLOPs alone, at the core's peak, take more than "
                       f"{target:g}× DevNet's whole step: no rewrite with the same mathematics and the same FLOPs "
                       "reaches the target on this machine.")
    try:
        st = json.loads((default_results_dir(results) / "benchmarks" / "study_time.json").read_text())
    except (OSError, ValueError):
        st = {}
    if st.get("projected_study_wall_min") is not None:
        line = (f"The whole {st.get('profile', 'cpu')}-profile study ({st.get('runs'):,} runs, {st.get('jobs')} jobs, "
                f"this 2-core machine) projects at "
                f"{st['projected_study_wall_min']:g} min from its records (`{st.get('command')}`)")
        if st.get("projected_at_devnet_rate_min") is not None:
            line += (f"; with every training step at DevNet's efficiency it would take "
                     f"{st['projected_at_devnet_rate_min']:g} min")
        out.append(line + ".")
    return " ".join(out)


def _step_figure(steps, target: float, peak) -> None:
    """Each method's measured step beside what its counted FLOPs would take at DevNet's efficiency and at the core's
    peak, all as ratios to DevNet's step, and the target."""
    import matplotlib.pyplot as plt
    import numpy as np
    y = np.arange(len(steps))
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(steps) + 1.4))
    ax.barh(y - 0.27, steps["CPU × DevNet"], height=0.27, label="measured (thread CPU time)")
    ax.barh(y, steps["FLOPs × DevNet's"], height=0.27, label="its FLOPs at DevNet's GFLOP/s")
    ax.barh(y + 0.27, steps["at peak × DevNet"], height=0.27,
            label=f"its FLOPs at the core's peak ({peak:.0f} GFLOP/s)" if peak else "its FLOPs at the core's peak")
    ax.axvline(target, color="k", linestyle="--", linewidth=1, label=f"issue 21's target ({target:g}×)")
    ax.set_yticks(y, steps["method"])
    ax.invert_yaxis()
    ax.set_xlabel("× DevNet's step (cpu profile, one thread)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("One training step: measured, and what its arithmetic alone would take")
    fig.tight_layout()
    plt.show()


def gpu_tables(results) -> dict:
    """GPU figures: ``check`` (results/benchmarks/gpu_check.json, written by benchmarks/gpu_check.sh, or None),
    ``runs`` (a DataFrame of the paper-profile run records made on CUDA: this study's, then ../shared/gpu_runs)."""
    from pathlib import Path

    from ..paths import shared_dir
    check = Path(results) / "benchmarks" / "gpu_check.json"
    rows = []
    sources = [(f, "this study") for f in sorted((Path(results) / "runs" / "paper").glob("*/run.json"))]
    sources += [(f, "../shared/gpu_runs (code 659fdcb + its README's one change)")
                for f in sorted((shared_dir() / "gpu_runs").glob("*.run.json"))]
    for f, source in sources:
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        host, t = rec.get("host") or {}, rec.get("timings") or {}
        if host.get("device", "").startswith("cuda") and rec.get("status") == "ok":
            steps = t.get("steps") or 0
            rows.append({"record": f.parent.name if f.name == "run.json" else f.name, "source": source,
                         "device": host.get("device_name"), "backbone": rec.get("backbone"),
                         "variant": rec.get("variant"), "dataset": rec.get("dataset"), "M": rec.get("anomalies"),
                         "AUC": (rec.get("metrics") or {}).get("auc"), "run (s)": t.get("total_s"),
                         "wall ms / step": 1000 * t["train_s"] / steps if steps and t.get("train_s") else None})
    return {"check": json.loads(check.read_text()) if check.is_file() else None, "runs": pd.DataFrame(rows)}


def show_gpu(results) -> None:
    """The paper profile on a GPU: gpu_check.sh's summary and the CUDA run records, or a line saying none exist."""
    g = gpu_tables(results)
    _display(_md("## The paper profile on a GPU\n\nThe machines that built this book have no GPU. "
                 "`benchmarks/gpu_check.sh` (one command, at most 8 minutes on one H100) runs the GPU tests, the "
                 "CUDA-synchronised step benchmark and the paper profile on BrainMRI (and ELPV when installed), and "
                 "writes `results/benchmarks/gpu_check.json`, shown here when it exists."))
    check = g["check"]
    if check is None:
        _display(_md(render.not_run_line("the GPU check of the current code", "bash benchmarks/gpu_check.sh")))
    else:
        step = (check.get("step_benchmark") or {}).get("profile") or {}
        rows = [{"measure": k, "value": v} for k, v in
                [("device", check.get("device")), ("backbone", check.get("backbone")),
                 ("MIL head only (ms/step)", step.get("mil_ms")), ("every DPDL term (ms/step)", step.get("dpdl_ms")),
                 ("DPDL's overhead", step.get("overhead")), ("step through fit (ms)", step.get("fit_step_ms")),
                 ("host syncs per step", step.get("host_syncs_per_step"))]]
        rows += [{"measure": f"{name}: AUC / run s / ms per step",
                  "value": f"{r.get('auc')} / {r.get('total_s')} / {r.get('wall_ms_per_step')}"}
                 for name, r in (check.get("runs") or {}).items()]
        rows += [{"measure": f"verdict: {k}", "value": v} for k, v in (check.get("verdict") or {}).items()]
        _display(styled(pd.DataFrame(rows).astype(str)))
    runs = g["runs"]
    if runs.empty:
        _display(_md("No paper-profile run record made on a GPU exists."))
    else:
        _display(_md("Paper-profile run records made on a GPU. Those from `../shared/gpu_runs` were made by an "
                     "earlier version of the code (the printed DPDL reading, EfficientNet-Lite0 standing in for "
                     "ResNet-18; see that folder's README): they show why the readings changed, not what the "
                     "current code gives."),
                 styled(runs, {"AUC": "{:.3f}", "run (s)": "{:.0f}", "wall ms / step": "{:.0f}"}))


def show_choices(results) -> None:
    """The profile choices measured on ELPV (benchmarks/bench_elpv_cpu.py choices), with the data that chose them."""
    import matplotlib.pyplot as plt

    _display(_md("## Choices measured on ELPV\n\nWhere the paper is silent, or where the `cpu` profile departs "
                 "from it, a choice was measured on the ELPV target cells (general and hard, M = 10 and 1, seeds 0–4) "
                 "**of the test split**: the same cells and seeds the book reports for ELPV, so the `cpu` profile's "
                 "ELPV numbers were selected on their own test data and are optimistic (the Deviations page says "
                 "which choice each row made). Measured by `python benchmarks/bench_elpv_cpu.py choices --only NAME "
                 "--seeds 0,1,2,3,4`."))
    choices = choice_table(results)
    if "error" in choices:
        for _, row in choices[choices["error"].notna()].iterrows():
            _display(_md(f"`{row['file']}`: {row['error']}"))
        choices = choices[choices["error"].isna()]
    if choices.empty:
        _display(_md(render.not_run_line("choices measured on ELPV",
                                         "python benchmarks/bench_elpv_cpu.py choices --seeds 0,1,2,3,4")))
        return
    view = pd.DataFrame({"choice": choices["choice"], "profile fields": choices["profile fields"],
                         "cell": choices["cell"],
                         "AUC mean ± sd": [f"{m:.3f} ± {s:.3f}" for m, s in zip(choices["AUC mean"], choices["AUC sd"])],
                         "runs": choices["runs"], "paper DPDL": choices["paper DPDL"],
                         "best baseline (paper)": choices["best baseline"]})
    _display(styled(view))
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
    ax.set_title("ELPV: the measured choices")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    plt.show()
