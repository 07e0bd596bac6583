"""What the book's own pages compute from the run records: the rerun command of a record, the provenance table,
the timings and the measured profile choices. Records come from :func:`dpdl.study.analysis.load_runs`
(``include_failed=True``)."""
from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pandas as pd

from ..methods.dpdl.model import paper_defaults
from ..study.analysis import default_results_dir, load_runs


def reproduce_command(rec: dict) -> str:
    """The ``dpdl train`` command line that reruns one run record (its non-default options only)."""
    cfg = dict(rec.get("config") or {})
    profile = rec.get("profile") or cfg.get("profile") or "cpu"
    parts = ["dpdl", "train", "--dataset", str(rec.get("dataset") or cfg.get("dataset"))]
    setting = rec.get("setting") or cfg.get("setting") or "general"
    parts += ["--setting", setting]
    kc = rec.get("known_class") or cfg.get("known_class")
    if kc:
        parts += ["--known-class", str(kc)]
    parts += ["--anomalies", str(rec.get("anomalies", cfg.get("anomalies"))), "--seed", str(rec.get("seed", cfg.get("seed"))),
              "--profile", profile]
    method = str(rec.get("method") or cfg.get("method") or "dpdl")
    if method != "dpdl":
        parts += ["--method", method]
    # the options that differ from the "full" DPDL of the record's dataset (its paper λ, Sec. 5.7); a baseline
    # takes none of DPDL's options (dpdl.train.validate refuses them), whatever its record stored
    dpdl_opts = paper_defaults(rec.get("dataset") or cfg.get("dataset")) if method == "dpdl" else {}
    defaults = {"backbone": None, **dpdl_opts}
    for key, default in defaults.items():
        value = cfg.get(key)
        if isinstance(value, (list, tuple)):
            value = ",".join(value)
        if value is None or value == default:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + key.replace("_", "-").replace("use-", ""))
        else:
            parts += [flag, str(value)]
    run_id = rec.get("run_id")
    if run_id:
        parts += ["--run-id", run_id, "--out", f"reruns/{profile}/{run_id}"]
    else:
        parts += ["--out", f"reruns/{profile}/run"]
    return " ".join(shlex.quote(p) for p in parts)


def provenance_table(results=None, profile: str = "cpu", records=None):
    """One row per run record: what it is, where its number came from, and the command that reruns it.
    ``records``: :func:`dpdl.study.analysis.load_runs` with ``include_failed=True`` (else read from ``results``)."""
    recs = (load_runs(profile, results, include_failed=True, include_outdated=True) if records is None
            else records)
    out = recs.copy()
    out["command"] = [reproduce_command(r) for r in recs["record"]]
    out = out.sort_values(["dataset", "setting", "anomalies", "method", "variant", "known_class", "seed"],
                          na_position="first").reset_index(drop=True)
    cols = ["run_id", "status", "auc", "code_version", "profile", "seed", "fingerprint", "date", "groups", "command",
            "error"]
    return pd.DataFrame(out, columns=cols)


RUN_STEPS = ("features_s", "train_s", "test_s")   # the parts of timings.total_s that `dpdl train` measures


def performance_tables(results=None, profile: str = "cpu", records=None) -> dict:
    """Wall time per run and per study, the step-time breakdown, and the benchmark files (``benchmarks/``).

    Per run: ``timings`` of the record (measured inside ``dpdl train``) and ``study.notebook_s`` (the run's share
    of the wall time of its batch's experiment notebook under ``dpdl study run``, kernel start included: the
    batch's time divided by its runs; a run alone in its kernel has it all)."""
    recs = (load_runs(profile, results, include_failed=True, include_outdated=True) if records is None
            else records)
    rows = []
    for rec in recs["record"]:
        t = rec.get("timings") or {}
        row = {"run_id": rec.get("run_id"), "dataset": rec.get("dataset"), "variant": rec.get("variant"),
               "status": rec.get("status"), "device": (rec.get("host") or {}).get("device"),
               "notebook_s": (rec.get("study") or {}).get("notebook_s")}
        row.update({k: v for k, v in t.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        rows.append(row)
    per_run = pd.DataFrame(rows)
    out = {"per_run": per_run}
    if not per_run.empty and "total_s" in per_run and per_run["total_s"].notna().any():
        timed = per_run[per_run["total_s"].notna()]
        out["per_dataset"] = (timed.groupby("dataset")["total_s"].agg(["count", "median", "mean", "sum"])
                              .rename(columns={"count": "runs", "median": "median_s", "mean": "mean_s",
                                               "sum": "sum_s"}).reset_index())
        wall = per_run["notebook_s"].dropna() if "notebook_s" in per_run else pd.Series(dtype=float)
        out["study"] = pd.DataFrame([{
            "profile": profile, "runs": len(per_run), "timed runs": len(timed),
            "sum of run wall times (h)": wall.sum() / 3600 if len(wall) else float("nan"),
            "sum of in-process times (h)": timed["total_s"].sum() / 3600,
            "median run wall time (s)": wall.median() if len(wall) else float("nan"),
            "median in-process time (s)": timed["total_s"].median()}])
        steps = [k for k in RUN_STEPS if k in timed]
        same = timed.dropna(subset=steps)          # every part averaged over the same runs: shares add up
        parts = {k: same[k].mean() for k in steps}
        mean_total = same["total_s"].mean()
        parts["other_s (total_s minus the above)"] = mean_total - sum(parts.values())
        br = pd.DataFrame({"part": list(parts), "mean_s": list(parts.values())})
        br["share of total_s"] = br["mean_s"] / mean_total
        if len(wall):   # a batch's kernel time is shared by all its runs: over every run, outside total_s
            both = timed.dropna(subset=["notebook_s"])
            br.loc[len(br)] = ["notebook overhead (mean notebook_s − mean total_s, every run; not in total_s)",
                               float(both["notebook_s"].mean() - both["total_s"].mean()), float("nan")]
        br.attrs["runs"] = len(same)
        out["breakdown"] = br
        step_cols = [c for c in timed.columns if c.startswith("step_") and c.endswith("_ms")]
        if step_cols:
            out["steps"] = pd.DataFrame({"part": step_cols, "mean_ms": [timed[c].mean() for c in step_cols]})
    root = default_results_dir(results)
    bench = []
    for path in sorted((root / "benchmarks").glob("*.json")):
        if path.name.startswith((CHOICE_PREFIX, DIAGNOSTIC_PREFIX)):   # shown by choice_table, diagnostic_table
            continue
        try:
            bench.append((path.name, json.loads(path.read_text(encoding="utf-8"))))
        except ValueError:
            bench.append((path.name, {"error": "not valid JSON"}))
    out["benchmarks"] = bench
    return out


CHOICE_PREFIX = "elpv_cpu_choice_"


def choice_table(results: str | os.PathLike | None = None):
    """The profile choices measured on ELPV (``benchmarks/bench_elpv_cpu.py choices``): one row per choice and
    target cell with the profile fields it sets, the AUC mean and sd over the seeds, the paper's DPDL and
    best-baseline numbers, and the file. An empty DataFrame when no ``results/benchmarks/elpv_cpu_choice_*.json``
    exists."""
    root = default_results_dir(results)
    rows = []
    for path in sorted((root / "benchmarks").glob(f"{CHOICE_PREFIX}*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            ref = {f"{r['setting']} M={r['anomalies']}": (r.get("paper_dpdl"), r.get("paper_best_baseline"))
                   for r in data.get("rows", [])}
            cells = {k: (v["mean"], v["sd"], v["n"]) for k, v in data.get("cells", {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            rows.append({"choice": path.stem[len(CHOICE_PREFIX):], "file": path.name,
                         "error": "not a choice benchmark file (expected the JSON that bench_elpv_cpu.py writes)"})
            continue
        over = data.get("overrides", {})
        for cell, (mean, sd, n) in cells.items():
            paper, base = ref.get(cell, (None, None))
            rows.append({"choice": data.get("choice", path.stem[len(CHOICE_PREFIX):]),
                         "profile fields": ", ".join(f"{k}={v}" for k, v in sorted(over.items())), "cell": cell,
                         "AUC mean": mean, "AUC sd": sd, "runs": n, "paper DPDL": paper,
                         "best baseline": base, "file": path.name, "code": data.get("code_version")})
    return pd.DataFrame(rows)


DIAGNOSTIC_PREFIX = "elpv_cpu_finetune_"


def diagnostic_table(results=None) -> pd.DataFrame:
    """The fine-tuning diagnostic (``benchmarks/bench_elpv_finetune.py``): per file, cell and arm (frozen or
    fine-tuned last stage) the mean AUC, the runs, the mean step time (ms) and the command. Empty without files."""
    rows = []
    for path in sorted((default_results_dir(results) / "benchmarks").glob(f"{DIAGNOSTIC_PREFIX}*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            runs = pd.DataFrame(data.get("rows", []))
            for cell, arms in data["cells"].items():
                for arm, st in arms.items():
                    tuned = arm == "finetuned"
                    sel = runs[runs["finetune_last_stage"] == tuned] if "finetune_last_stage" in runs else runs
                    rows.append({"cell": cell, "arm": "fine-tuned last stage" if tuned else "frozen (profile)",
                                 "AUC mean": st["mean"], "runs": st["n"],
                                 "step (ms)": float(sel["step_ms"].mean()) if "step_ms" in sel else float("nan"),
                                 "command": data.get("command", ""), "file": path.name})
        except (ValueError, KeyError, TypeError, AttributeError):
            rows.append({"cell": "", "arm": "", "file": path.name,
                         "command": "not a diagnostic file (expected the JSON bench_elpv_finetune.py writes)"})
    return pd.DataFrame(rows)


ARCHIVE_PATTERNS = ("runs/{profile}/*/run.json", "runs/{profile}/*/scores.json", "tables/{profile}/*.csv")


def results_archive(results, profile: str, dst_dir) -> Path:
    """``<dst_dir>/results-<profile>.zip``: the profile's run records (``run.json``, ``scores.json``) and tables, as
    the book reads them, for the first page's download link. Entries are sorted and dated 1980-01-01, so the same
    records give the same bytes."""
    import zipfile

    root = default_results_dir(results)
    dst = Path(dst_dir) / f"results-{profile}.zip"
    dst.parent.mkdir(parents=True, exist_ok=True)
    files = sorted({p for pat in ARCHIVE_PATTERNS for p in root.glob(pat.format(profile=profile))})
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            info = zipfile.ZipInfo("results/" + p.relative_to(root).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, p.read_bytes())
    return dst


def step_table(results=None) -> pd.DataFrame:
    """One training step of every trained method on the same cpu-profile batch (``benchmarks/bench_step_cpu.py``,
    ``results/benchmarks/step_cpu.json``): wall and thread-CPU ms per step, each as a ratio to DevNet's, and the
    adapter's GFLOP, the whole step's GFLOP (matrix products and convolutions), the rate it achieves, its FLOPs over
    DevNet's and its FLOPs at the core's float32 peak as a ratio to DevNet's step; with ``--compile``, the compiled step, its speed-up over eager and the first loss's relative
    difference. Empty without the file."""
    from ..study.analysis import METHOD_LABELS
    path = default_results_dir(results) / "benchmarks" / "step_cpu.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return pd.DataFrame()
    rows = []
    for m, r in (data.get("results") or {}).items():
        rows.append({"method": METHOD_LABELS.get(m, m), "batch": r.get("batch"), "step (ms)": r.get("step_ms"),
                     "× DevNet": r.get("ratio_to_devnet"), "CPU step (ms)": r.get("step_cpu_ms"),
                     "CPU × DevNet": r.get("cpu_ratio_to_devnet"),
                     "adapter fwd+bwd (GFLOP)": (r.get("flops_adapter") or 0) / 1e9})
        if r.get("flops_step") is not None:   # the whole step's matrix products and convolutions, and its rate
            rows[-1].update({"step GFLOP": r["flops_step"] / 1e9, "GFLOP/s": r.get("gflops_per_s"),
                             "FLOPs × DevNet's": r.get("flops_ratio_to_devnet"),
                             "at peak × DevNet": r.get("peak_ratio_to_devnet")})
        if data.get("compiled"):      # --compile: the same step with the losses under torch.compile
            rows[-1].update({"compiled CPU step (ms)": r.get("compiled_step_cpu_ms"),
                             "compiled speed-up": r.get("compiled_speedup_cpu"),
                             "compiled loss rel. diff.": (f"{r['compiled_first_total_rel_diff']:.1e}" if
                                                          r.get("compiled_first_total_rel_diff") is not None else ""),
                             "compile error": r.get("compile_error", "")})
    df = pd.DataFrame(rows)
    if "compile error" in df and not df["compile error"].any():
        df = df.drop(columns="compile error")
    df.attrs.update(command=data.get("command"), code_version=data.get("code_version"), date=data.get("date"),
                    target=data.get("target_ratio"), load=data.get("loadavg_1_5_15"),
                    peak=data.get("peak_gflops_per_s"))
    return df
