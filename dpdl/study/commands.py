"""``dpdl study run | status | tables``: the sweep that regenerates the paper.

Examples::

    dpdl study run --profile cpu                         # the default study: what is missing, resumable
    dpdl study run --profile cpu --only table1,fig3 --seeds 3
    dpdl study run --profile cpu --methods dpdl --seeds 1 --rerun-outdated   # after a change to DPDL: its runs only
    dpdl study run --profile paper --data-root /data --executor dask --workers 8
    dpdl study run --profile paper --executor dask --scheduler tcp://head:8786
    dpdl study status --profile cpu                      # done / failed / pending per group, failed runs' errors
    dpdl study tables --profile cpu                      # results/tables/cpu/*.csv
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from dpdl.checks import cache_folder, data_root, input_file, int_at_least, output_dir


def _split_list(value: str | None) -> list[str] | None:
    if not value:
        return None
    out = []
    for part in value if isinstance(value, list) else [value]:
        out.extend(p.strip() for p in str(part).split(",") if p.strip())
    return out or None


def register(subparsers) -> None:
    p = subparsers.add_parser("study", help="the sweep that regenerates the paper's tables and figures",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="study_command", metavar="ACTION", required=True)

    def common(q):
        q.add_argument("--profile", default="cpu", help="study profile: paper, cpu or smoke (default cpu)")
        q.add_argument("--results-dir", default=None,
                       help="results folder (default $DPDL_RESULTS or <repo>/results)")
        q.add_argument("--data-root", default=None, help="data root for the datasets not embedded (or $DPDL_DATA)")
        q.add_argument("--datasets", nargs="+", default=None, help="only these datasets (names or a,b,c)")
        q.add_argument("--only", nargs="+", default=None,
                       help="only these groups: table1 table2 table3 table5 table6 fig2 fig3 (or a,b)")
        q.add_argument("--seeds", type=int_at_least(1), default=None,
                       help="at most this many seeds (0..N-1) per block")
        q.add_argument("--methods", nargs="+", default=None,
                       help="only the runs of these methods (dpdl: every DPDL variant; names or a,b)")
        q.add_argument("--study", default=None, help="a study YAML other than the packaged dpdl/study/study.yaml")

    r = sub.add_parser("run", help="execute the runs that are missing (never recomputes a finished run)")
    common(r)
    r.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="local: this machine (--jobs runs at a time on CPU, one per GPU); dask: a Dask cluster")
    r.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (tcp://host:8786)")
    r.add_argument("--workers", type=int_at_least(1), default=None,
                   help="worker processes of the Dask LocalCluster")
    r.add_argument("--jobs", type=int_at_least(1), default=None,
                   help="local executor: runs at a time on CPU (default: cores // the profile's threads per run)")
    r.add_argument("--batch", type=int_at_least(1), default=None,
                   help="at most this many runs of a dataset per notebook kernel (default: dpdl.study.plan."
                        "default_batch: several in the feature-cache profiles cpu and smoke, 1 in paper; a stopped "
                        "sweep loses the batches in flight)")
    r.add_argument("--retry-failed", action="store_true", help="also rerun the runs that failed before")
    r.add_argument("--rerun-outdated", action="store_true",
                   help="also rerun finished runs made with other settings of the profile than the code's now")
    r.add_argument("--wait", action="store_true",
                   help="when another sweep uses the results folder, wait for it (default: refuse at once)")
    r.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--no-tables", action="store_true",
                   help="do not rewrite results/tables/<profile> and results/figures/<profile> after the runs")
    r.add_argument("--plots", action="store_true",
                   help="each run's notebook also draws its score histogram (about 1 s more per run; one run per "
                        "kernel unless --batch is given)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="done / failed / pending runs per group")
    common(s)
    s.add_argument("--list", action="store_true", help="list the pending runs too")
    s.set_defaults(func=cmd_status)

    t = sub.add_parser("tables", help="write results/tables/<profile>/*.csv from the run records")
    common(t)
    t.set_defaults(func=cmd_tables)


def _load_study(path: str) -> dict:
    """``--study PATH`` read and checked: a YAML mapping with ``defaults`` and ``profiles``."""
    import yaml
    from .plan import load_study

    input_file(path, "--study")
    try:
        study = load_study(path)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"--study {path} is not valid YAML ({type(exc).__name__}): expected a study definition "
                         "like dpdl/study/study.yaml") from None
    if not isinstance(study, dict) or not isinstance(study.get("profiles"), dict):
        raise ValueError(f"--study {path} is not a study definition: expected a YAML mapping with 'profiles' "
                         "(see dpdl/study/study.yaml)")
    from .plan import check_study
    return check_study(study, f"--study {path}")


def _check_datasets(names: list[str] | None, study: dict, profile: str) -> None:
    """Every ``--datasets`` name must be one the profile's study runs."""
    from .plan import _flatten

    groups = (study["profiles"].get(profile) or {}).get("groups") or {}
    known = sorted({ds for blocks in groups.values() for b in (blocks if isinstance(blocks, list) else [blocks])
                    for ds in _flatten(b["datasets"])})
    bad = [n for n in names or [] if n not in known]
    if bad:
        raise ValueError(f"--datasets {', '.join(bad)}: not in the {profile} study; expected some of "
                         f"{', '.join(known)}")


def _plan(args, check_available=True):
    from .plan import expand, load_study

    root = data_root(args.data_root)
    study = _load_study(args.study) if args.study else load_study()
    if args.profile in study["profiles"]:
        _check_datasets(_split_list(args.datasets), study, args.profile)
    plan = expand(args.profile, datasets=_split_list(args.datasets), only=_split_list(args.only),
                  seeds=args.seeds, data_root=root, study=study, check_available=check_available,
                  methods=_split_list(args.methods))
    return plan, root


def _print_skipped(plan) -> None:
    """One line per skipped dataset (the 15 MVTec AD subsets share one line)."""
    mvtec = [ds for ds in plan.skipped if ds.startswith("mvtec_")]
    for ds, why in plan.skipped.items():
        if ds.startswith("mvtec_") and len(mvtec) > 1:
            continue
        groups = ", ".join(plan.skipped_groups.get(ds, []))
        print(f"skipping {ds} ({groups}): {why}")
    if len(mvtec) > 1:
        groups = sorted({g for ds in mvtec for g in plan.skipped_groups.get(ds, [])})
        print(f"skipping {len(mvtec)} MVTec AD subsets ({', '.join(groups)}): {plan.skipped[mvtec[0]]}")


def cmd_run(args) -> int:
    from .local import Stopped
    from .runner import run_specs

    if args.results_dir is not None:
        output_dir(args.results_dir, "--results-dir")
    cache_folder()          # a bad $DPDL_CACHE is one sentence here, not a failed record per run
    plan, root = _plan(args)
    _print_skipped(plan)
    if args.dry_run:
        for s in plan.runs:
            print(f"{s.run_id}\t{','.join(s.groups)}")
        print(f"{len(plan.runs)} runs")
        return 0
    from .runner import run_state

    def done() -> int:
        return sum(run_state(s, args.profile, args.results_dir)[0] == "done" for s in plan.runs)

    done_before = done()
    try:
        res = run_specs(plan.runs, args.profile, args.results_dir, executor=args.executor, scheduler=args.scheduler,
                        workers=args.workers, data_root=root, retry_failed=args.retry_failed,
                        progress=not args.no_progress, plot=args.plots, jobs=args.jobs,
                        rerun_outdated=args.rerun_outdated, wait=args.wait, batch=args.batch)
    except Stopped as stop:          # counted on disk: a batch stopped midway may have finished some of its runs
        now = done()
        print(f"stopped by {signal.Signals(stop.signum).name}: the runs in flight were stopped and removed; "
              f"{max(now - done_before, 0)} run(s) finished by this sweep are kept ({now} of {len(plan.runs)} "
              "done); the same command resumes", file=sys.stderr)
        return 128 + stop.signum
    print(f"ran {res['ran']} run(s): {res['ok']} ok, {res['failed_now']} failed; "
          f"{res['done_before']} were done before, {res['failed_before']} failed before")
    for r in res["results"]:
        if r["status"] != "ok":
            print(f"failed: {r['run_id']}: {r['error']}")
    if not args.no_tables:
        from .status import tables_stale
        stale = None if res["ran"] else tables_stale(plan, args.results_dir)
        if res["ran"] or stale:
            from .tables import write_tables
            if stale:
                print(f"rebuilding the tables: {stale}")
            paths = write_tables(args.profile, args.results_dir, data_root=root)
            print(f"wrote {len(paths)} tables and figures: {paths[-1].parent}, {paths[0].parent}")
    return 1 if res["failed_now"] else 0


def cmd_status(args) -> int:
    from .runner import study_status

    plan, _ = _plan(args)
    st = study_status(plan, args.results_dir)
    _print_skipped(plan)
    width = max([len(g) for g in st["groups"]] + [5])
    print(f"{'group':<{width}}  {'done':>5} {'failed':>6} {'pending':>7} {'total':>5}")
    tot = {"done": set(), "failed": set(), "pending": set()}
    for g, d in st["groups"].items():
        n = sum(len(v) for v in d.values())
        print(f"{g:<{width}}  {len(d['done']):>5} {len(d['failed']):>6} {len(d['pending']):>7} {n:>5}")
        for k in tot:
            tot[k].update(d[k])
    n = sum(len(v) for v in tot.values())
    print(f"{'all':<{width}}  {len(tot['done']):>5} {len(tot['failed']):>6} {len(tot['pending']):>7} {n:>5}"
          "  (distinct runs)")
    for rid, err in st["failed"].items():
        print(f"failed: {rid}: {err}")
    if st["outdated"]:
        fields = sorted({f for v in st["outdated"].values() for f in v})
        print(f"outdated: {len(st['outdated'])} done run(s) were made with other settings "
              f"({', '.join(fields)}); `dpdl study run --rerun-outdated` replaces them")
    if st["foreign"]:
        print(f"foreign: {len(st['foreign'])} run folder(s) under runs/{args.profile} are not runs of the study "
              f"and stay out of the tables: {', '.join(st['foreign'])}")
    if args.list:
        for rid in sorted(tot["pending"]):
            print(f"pending: {rid}")
    return 0


def cmd_tables(args) -> int:
    from .tables import write_tables

    if args.results_dir is not None:
        output_dir(args.results_dir, "--results-dir")
    paths = write_tables(args.profile, args.results_dir, data_root=data_root(args.data_root))
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":  # pragma: no cover
    from dpdl.cli import main
    sys.exit(main(["study", *sys.argv[1:]]))
