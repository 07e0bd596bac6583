"""Do two results folders hold the same numbers? Compares the AUC of every run id both have (exact equality).

The same seed and profile must give the same numbers on the same machine: rerun the study into a scratch folder
and compare it with the committed records.

With differences it also says how large they are: the mean and largest |ΔAUC| over the runs, and over the cells
(a run id without its seed: the mean over seeds that the tables show).

``--method M`` compares only M's runs; ``--write NAME`` also writes the summary to results/benchmarks/NAME.json and
NAME.md (the Deviations page includes ``dpdl_step_rerun.md``: the records before and after DPDL's issue-21 step).

Usage:
  dpdl study run --profile cpu --results-dir /tmp/rerun
  python benchmarks/compare_runs.py results /tmp/rerun [--profile cpu]   (exit 1 when a number differs)
  git worktree add /tmp/before 547d7c1   # the records before DPDL's issue-21 step
  python benchmarks/compare_runs.py /tmp/before/results results --method dpdl --write dpdl_step_rerun
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def aucs(root: Path, profile: str, method: str | None = None) -> dict:
    out = {}
    for p in sorted((root / "runs" / profile).glob("*/run.json")):
        rec = json.loads(p.read_text(encoding="utf-8"))
        if method and (rec.get("config") or {}).get("method", "dpdl") != method:
            continue
        if rec.get("status") == "ok":
            out[rec["run_id"]] = rec["metrics"]["auc"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--method", default=None, help="compare only this method's runs")
    ap.add_argument("--write", default=None, metavar="NAME", help="also write results/benchmarks/NAME.{json,md}")
    args = ap.parse_args()
    if args.write is not None and not re.fullmatch(r"[A-Za-z0-9_]+", args.write):
        print(f"compare_runs: --write {args.write!r} must be a name of letters, digits and _", file=sys.stderr)
        return 2
    a, b = aucs(args.a, args.profile, args.method), aucs(args.b, args.profile, args.method)
    for root, found in ((args.a, a), (args.b, b)):
        if not found:
            print(f"compare_runs: {root} holds no finished run of profile {args.profile} "
                  f"(expected {root}/runs/{args.profile}/<run_id>/run.json)", file=sys.stderr)
            return 2
    common = sorted(set(a) & set(b))
    diff = [(k, a[k], b[k]) for k in common if a[k] != b[k]]
    print(f"{len(common)} runs in both: {len(common) - len(diff)} identical, {len(diff)} different")
    for k, x, y in diff[:20]:
        print(f"  {k}: {x!r} vs {y!r}")
    summary = {"a": str(args.a), "b": str(args.b), "method": args.method, "runs": len(common),
               "identical": len(common) - len(diff)}
    if diff:
        d = [y - x for _, x, y in diff]
        cells: dict[str, list] = {}
        for k, x, y in diff:
            cells.setdefault(re.sub(r"__s\d+__", "__", k), []).append(y - x)
        means = {c: sum(v) / len(v) for c, v in cells.items()}
        worst = max(means, key=lambda c: abs(means[c]))
        summary.update(mean_delta=sum(d) / len(d), mean_abs_delta=sum(map(abs, d)) / len(d),
                       max_abs_delta=max(map(abs, d)), cells=len(cells),
                       cell_mean_abs_delta=sum(map(abs, means.values())) / len(means),
                       cell_max_abs_delta=abs(means[worst]), cell_max=worst)
        print(f"runs: mean ΔAUC (b - a) {summary['mean_delta']:+.4f}, mean |ΔAUC| {summary['mean_abs_delta']:.4f}, "
              f"largest |ΔAUC| {summary['max_abs_delta']:.4f}")
        print(f"cells ({len(cells)}, mean over their seeds): mean |Δ| {summary['cell_mean_abs_delta']:.4f}, "
              f"largest |Δ| {summary['cell_max_abs_delta']:.4f} ({worst})")
    if args.write:
        _write(args.write, summary, " ".join(["python", "benchmarks/compare_runs.py", *sys.argv[1:]]))
    return 1 if diff else 0


def _write(name: str, summary: dict, command: str) -> None:
    """results/benchmarks/NAME.json (the summary) and NAME.md (it in words, for the book)."""
    from _common import write
    path = write(name, {**summary, "command": command})
    who = f"{summary['method']} " if summary.get("method") else ""
    text = [f"Measured by `{command}` (AUC of every {who}run in both folders, cpu profile unless named):", "",
            f"- {summary['runs']} runs in both, {summary['identical']} identical."]
    if summary["runs"] > summary["identical"]:
        text += [f"- A run's AUC moved by {summary['mean_abs_delta']:.3f} on average (mean signed change "
                 f"{summary['mean_delta']:+.4f}), at most {summary['max_abs_delta']:.3f}.",
                 f"- A cell's mean over its seeds (what the tables show) moved by {summary['cell_mean_abs_delta']:.3f} "
                 f"on average over {summary['cells']} cells, at most {summary['cell_max_abs_delta']:.3f} "
                 f"(`{summary['cell_max']}`)."]
    path.with_suffix(".md").write_text("\n".join(text) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
