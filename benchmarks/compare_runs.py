"""Do two results folders hold the same numbers? Compares the AUC of every run id both have (exact equality).

The same seed and profile must give the same numbers on the same machine: rerun the study into a scratch folder
and compare it with the committed records.

With differences it also says how large they are: the mean and largest |ΔAUC| over the runs, and over the cells
(a run id without its seed: the mean over seeds that the tables show).

Usage:
  dpdl study run --profile cpu --results-dir /tmp/rerun
  python benchmarks/compare_runs.py results /tmp/rerun [--profile cpu]   (exit 1 when a number differs)
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def aucs(root: Path, profile: str) -> dict:
    out = {}
    for p in sorted((root / "runs" / profile).glob("*/run.json")):
        rec = json.loads(p.read_text(encoding="utf-8"))
        if rec.get("status") == "ok":
            out[rec["run_id"]] = rec["metrics"]["auc"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--profile", default="cpu")
    args = ap.parse_args()
    a, b = aucs(args.a, args.profile), aucs(args.b, args.profile)
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
    if diff:
        d = [y - x for _, x, y in diff]
        print(f"runs: mean ΔAUC (b - a) {sum(d) / len(d):+.4f}, mean |ΔAUC| {sum(map(abs, d)) / len(d):.4f}, "
              f"largest |ΔAUC| {max(map(abs, d)):.4f}")
        cells: dict[str, list] = {}
        for k, x, y in diff:
            cells.setdefault(re.sub(r"__s\d+__", "__", k), []).append(y - x)
        means = {c: sum(v) / len(v) for c, v in cells.items()}
        worst = max(means, key=lambda c: abs(means[c]))
        print(f"cells ({len(cells)}, mean over their seeds): mean |Δ| {sum(map(abs, means.values())) / len(means):.4f}, "
              f"largest |Δ| {abs(means[worst]):.4f} ({worst})")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
