"""Do two results folders hold the same numbers? Compares the AUC of every run id both have (exact equality).

The same seed and profile must give the same numbers on the same machine: rerun the study into a scratch folder
and compare it with the committed records.

Usage:
  dpdl study run --profile cpu --results-dir /tmp/rerun
  python benchmarks/compare_runs.py results /tmp/rerun [--profile cpu]   (exit 1 when a number differs)
"""
from __future__ import annotations

import argparse
import json
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
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
