"""Where a study stands on disk: done / failed / pending runs per group, foreign records, stale tables.

* :func:`study_status` -- per group of the plan its done, failed and pending run ids, the failed runs' errors,
  the outdated ones, and the **foreign** records: folders under ``runs/<profile>/`` that no run of the plan names
  (e.g. a run trained by hand with ``--out results/runs/<profile>/my_run``); they never enter the tables
  (:func:`dpdl.study.analysis.is_study_record`).
* :func:`tables_stale` -- why the tables of a profile must be rebuilt (missing, or older than a record the plan
  names), or ``None``: a sweep that ran nothing still rebuilds lost or stale tables.
"""
from __future__ import annotations

def study_status(plan, results_dir=None) -> dict:
    """Per group: done / failed / pending run ids; plus the failed runs' errors, the outdated and foreign runs."""
    from .outdated import outdated_fields
    from .runner import run_state

    out = {"groups": {}, "failed": {}, "outdated": {}, "skipped": dict(plan.skipped),
           "skipped_groups": dict(plan.skipped_groups), "foreign": foreign_runs(plan, results_dir)}
    for group, specs in plan.by_group().items():
        g = {"done": [], "failed": [], "pending": []}
        for s in specs:
            state, rec = run_state(s, plan.profile, results_dir)
            g[state].append(s.run_id)
            if state == "failed":
                out["failed"][s.run_id] = (rec or {}).get("error") or "unknown error"
            elif state == "done":
                changed = outdated_fields(rec, plan.profile)
                if changed:
                    out["outdated"][s.run_id] = changed
        out["groups"][group] = g
    return out


def foreign_runs(plan, results_dir=None) -> list[str]:
    """Run folders (holding a ``run.json``) under ``runs/<profile>/`` that are not runs of the default study of
    the profile: named by no run of ``plan`` nor of the full default plan, or not written by the sweep."""
    from .analysis import is_study_record
    from .plan import expand
    from .runner import TMP, runs_dir
    from ..records import read_record

    base = runs_dir(plan.profile, results_dir)
    if not base.is_dir():
        return []
    try:
        known = {s.run_id for s in expand(plan.profile, check_available=False).runs}
    except (ValueError, OSError):
        known = set()
    known |= {s.run_id for s in plan.runs}
    out = []
    for p in sorted(base.glob("*/run.json")):
        if p.parent.name == TMP:
            continue
        try:
            ok = is_study_record(read_record(p), p)
        except (OSError, ValueError):
            ok = True                        # unreadable: reported as failed when planned
        if p.parent.name not in known or not ok:
            out.append(p.parent.name)
    return out


def tables_stale(plan, results_dir=None) -> str | None:
    """Why ``tables/<profile>/`` must be rebuilt for ``plan`` (a table file missing, or older than a record of a
    planned run), or ``None`` when they are up to date."""
    from .analysis import default_results_dir
    from .runner import run_dir
    from .tables import TABLE_FILES

    folder = default_results_dir(results_dir) / "tables" / plan.profile
    files = [folder / name for name in TABLE_FILES.values()]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        return f"{len(missing)} table file(s) missing in {folder}"
    oldest = min(f.stat().st_mtime for f in files)
    records = [run_dir(s, plan.profile, results_dir) / "run.json" for s in plan.runs]
    newest = max((r.stat().st_mtime for r in records if r.is_file()), default=0.0)
    if newest > oldest:
        return f"the tables in {folder} are older than the run records"
    return None
