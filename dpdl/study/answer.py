"""The study's answer in three lines, computed from the claims checklist, the run records and the benchmark files
(no number typed by hand): what reproduces, against which same-profile baselines, at which fidelity.

:func:`answer` returns the three lines (Markdown); the first page prints them above everything else.
"""
from __future__ import annotations

import json

import pandas as pd

from . import analysis, tables, verdicts


def what_reproduces(check: pd.DataFrame, profile: str) -> str:
    """Line 1: how many of the claims tested here are reproduced (and which), and the other verdicts."""
    counts = check["verdict"].value_counts()
    tested = check[check["verdict"] != verdicts.UNTESTABLE]
    rep = tested[tested["verdict"] == verdicts.REPRODUCED]
    others = ", ".join(f"{int(counts[v])} {v}" for v in verdicts.VERDICTS[1:4] if counts.get(v, 0))
    untested = int(counts.get(verdicts.UNTESTABLE, 0))
    if not len(tested):
        return f"**No claim of the paper could be tested with the {profile} profile** ({untested} listed below)."
    head = (f"**No claim of the paper is reproduced** by the {profile} profile" if rep.empty else
            f"**{len(rep)} of the {len(tested)} claims tested are reproduced** by the {profile} profile")
    named = "" if rep.empty or len(rep) > 3 else " (" + "; ".join(rep["claim"]) + ")"
    return (f"{head}{named}: of {len(tested)} claims tested, {others or 'none other'}; {untested} more are not "
            f"testable here (no data or no run).")


def versus_baselines(data: dict, profile: str) -> str:
    """Line 2: DPDL against the baselines run here, same profile, splits and seeds (Tables 1–2 cells)."""
    cells = pd.concat([data["table1"], data["table2"]], ignore_index=True)
    cells = cells[cells["n"] > 0]
    parts = []
    for m in tables.CLAIM_BASELINES:
        b = analysis.METHOD_LABELS[m]
        c = cells[cells.get(f"vs {b} n", pd.Series(0, index=cells.index)) > 0]
        if c.empty:
            continue
        d = c[f"vs {b}"]
        above = int((c[f"vs {b} lo"] > 0).sum())
        parts.append(f"DPDL − {b} is {d.min():+.3f} to {d.max():+.3f} over {len(c)} cells (above 0 in {above or 'none'})"
                     .replace("-", "−"))
    knn = "kNN (ours)"
    if knn in cells and cells[knn].notna().any():
        c = cells[cells[knn].notna()]
        parts.append(f"kNN on the same features has the higher mean in {int((c[knn] > c['ours_mean']).sum())} "
                     f"of {len(c)} cells")
    if not parts:
        return f"No baseline ran in the {profile} profile: DPDL is compared with the paper's numbers only."
    return (f"**Against the baselines run here** (same {profile} profile, splits and seeds, paired): " + "; ".join(parts)
            + ".")


def _benchmark_choices(results_dir=None) -> tuple[int, list[str]]:
    """The cpu profile's choice benchmarks (``results/benchmarks/elpv_cpu_*.json``) and the cells they scored."""
    files = sorted((analysis.default_results_dir(results_dir) / "benchmarks").glob("elpv_cpu_*.json"))
    cells = []
    for f in files:
        try:
            for c in (json.loads(f.read_text()).get("cells") or {}):
                cells.append(c) if c not in cells else None
        except (OSError, ValueError):
            continue
    return len(files), cells


TABLE_GROUPS = ("table1", "table2")   # the cells whose DPDL runs must carry the paper's λ of their dataset


def cell_records(dpdl: pd.DataFrame) -> pd.DataFrame:
    """The DPDL records that stand for the Table 1/2 cells, chosen without looking at their λ: the study's groups a
    record stored (``study.groups``), else its stored variant tag, else its config at the paper's heads, C, ε, κ with
    DPL and DFL (any λ). Not ``analysis``'s ``variant``: that is recomputed with the dataset's paper λ, so a record of
    another λ would never be "full" and its λ never seen."""
    base = set(tables._at_paper_defaults(dpdl, free=("lam",)).index)

    def feeds(idx, rec) -> bool:
        study = rec.get("study") or {}
        if study.get("groups"):
            return bool(set(study["groups"]) & set(TABLE_GROUPS))
        tag = study.get("variant") or rec.get("variant")
        return tag == "full" if tag else idx in base

    return dpdl[[feeds(i, r) for i, r in zip(dpdl.index, dpdl["record"])]]


def _reading(profile: str, results_dir=None) -> str:
    """Which reading of Eqs. (8)-(17) the profile's DPDL records ran, and the λ of the records of the Table 1/2 cells
    per dataset (:func:`cell_records`) against Sec. 5.7 (:func:`dpdl.methods.dpdl.model.paper_lam`)."""
    every = analysis.load_runs(profile, results_dir, include_outdated=True)
    if every.empty:
        return ""
    runs, n_old = every[every["outdated"] == ""], int((every["outdated"] != "").sum())
    old = (f" {n_old} finished run(s) made with earlier settings (another reading or λ) are left out of every table "
           f"(`dpdl study status --profile {profile}`; `dpdl study run --rerun-outdated` replaces them)." if n_old else "")
    dpdl = runs[(runs["method"] == "dpdl") & (runs["status"] == "ok")]
    readings = sorted({str((r.get("dpdl_config") or {}).get("dpl_loss", "?")) for r in dpdl["record"]})
    if not readings:
        return old
    from ..methods.dpdl.model import paper_lam
    what = {"bridge": "a learnt Schrödinger bridge, Eqs. 10–13 evaluated, Eqs. 9 and 14 not used",
            "margin": "no Schrödinger bridge: a mixture likelihood with a margin",
            "printed": "Eqs. 16–17 as printed"}
    full = cell_records(dpdl)
    lam = {ds: sorted(set(g["lam"])) for ds, g in full.groupby("dataset")}
    lams = ", ".join(f"{ds} {'/'.join(f'{v:g}' for v in vs)}" for ds, vs in lam.items())
    as_paper = all(len(vs) == 1 and abs(vs[0] - paper_lam(ds)) <= 1e-12 * max(1.0, abs(vs[0]))
                   for ds, vs in lam.items())
    text = " DPDL ran reading " + ", ".join(f"`{r}` ({what.get(r, 'see Method')})" for r in readings)
    if lams:
        text += (f", λ of the Table 1/2 runs per dataset {'as Sec. 5.7 says' if as_paper else 'NOT all as Sec. 5.7 says'}"
                 f": {lams}")
    return text + " ([Method](../method.md))." + old


def fidelity(profile: str, results_dir=None) -> str:
    """Line 3: the profile's fidelity, whether the paper profile ran, and on which data the profile was chosen."""
    from ..config import PROFILES

    p, pp = PROFILES.get(profile), PROFILES["paper"]
    if p is None or profile == "paper":
        fid = f"the {profile} profile"
    else:
        fid = (f"reduced, the {profile} profile: {'frozen' if not p.finetune_backbone else 'fine-tuned'} {p.backbone} at "
               f"{p.image_size} px, {p.epochs}×{p.iters_per_epoch} iterations (the paper: {pp.backbone} fine-tuned at "
               f"{pp.image_size} px, {pp.epochs}×{pp.iters_per_epoch})")
    paper = analysis.load_runs("paper", results_dir)
    gpu = "has not run on a GPU here (no run record of it)" if paper.empty else f"ran {len(paper)} runs here"
    text = f"**Fidelity**: {fid}; the paper profile {gpu}." + _reading(profile, results_dir)
    if profile == "cpu":
        n, cells = _benchmark_choices(results_dir)
        if n:
            text += (f" The cpu profile's settings were chosen on ELPV's test cells ({len(cells)} cells, {n} benchmark "
                     "files `results/benchmarks/elpv_cpu_*.json`), not on a validation split "
                     "([Deviations](../deviations.md)).")
    return text


def related_systems(profile: str, results_dir=None) -> str | None:
    """Line 3 when any related system ran: does a prototype-based method of DPDL's family beat DRA and kNN?"""
    from . import related
    comp = related.comparisons(profile, results_dir)
    if comp.empty or set(comp["method"]) <= {"dpdl"}:
        return None
    return ("**The related systems** (ArcAD, HGAD, VPDM; [Related systems](../related.md), every count on its results "
            "page): " + related.headline(comp))


def answer(check: pd.DataFrame, data: dict, profile: str, results_dir=None) -> list[str]:
    """The lines of the first page: what reproduces, against the baselines, the related systems (when run), fidelity."""
    lines = [what_reproduces(check, profile), versus_baselines(data, profile), related_systems(profile, results_dir),
             fidelity(profile, results_dir)]
    return [line for line in lines if line]

