"""VPDM's named readings on validation splits only (ELPV general M = 10, cpu profile, ``eval_on="val"``: trained on
the reduced training split, scored on its validation split; the test images are never read).

Per (training reading, seed) one model is trained; every scoring reading (sampler, steps, start, test-time OT
pairing) is then scored on the same trained model, so their differences are paired. Training readings: the denoiser
(``conv`` / ``mlp``, ``--denoisers``) and the learning rate (``--lrs``; the cpu profile's 1e-4 and the paper's
1e-3, passed as a profile override). ``--cost``: one full ELPV run (test split) of VPDM and of DPDL back to back,
to compare their times in the same minute.

    python benchmarks/bench_related_vpdm.py --seeds 0 1 2
    python benchmarks/bench_related_vpdm.py --cost

Writes results/benchmarks/vpdm_readings.json (or vpdm_cost.json).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

from _common import fail, write

# scoring readings, each a change of the trained model's config at test (the first is the reference)
SCORING = {
    "ddim10": {"sampler": "ddim", "steps": 10},
    "ddim1": {"sampler": "ddim", "steps": 1},
    "ddim3": {"sampler": "ddim", "steps": 3},
    "ddim25": {"sampler": "ddim", "steps": 25},
    "ddim100": {"sampler": "ddim", "steps": 100},
    "ddim10_noclip": {"sampler": "ddim", "steps": 10, "clip": False},
    "ddim10_eta1": {"sampler": "ddim", "steps": 10, "eta": 1.0},
    "ddim10_mean": {"sampler": "ddim", "steps": 10, "start": "mean"},
    "ddim1_mean": {"sampler": "ddim", "steps": 1, "start": "mean"},
    "ddim10_pair15": {"sampler": "ddim", "steps": 10, "pair": 15},
    "ddim10_lone": {"sampler": "ddim", "steps": 10, "pair": 0},
    "ancestral": {"sampler": "ancestral"},
}


def train_and_score(seed: int, options: dict, overrides: dict, scoring: list[str]) -> dict:
    import torch

    from dpdl.modes import embed_all, evaluate
    from dpdl.train import RunConfig, _split, _train_and_test, method_profile, roc_metrics, validate
    cfg = RunConfig("elpv", anomalies=10, seed=seed, profile="cpu", method="vpdm", eval_on="val",
                    method_options=options, overrides=overrides)
    base, backbone = validate(cfg)
    prof = method_profile(base, "vpdm")
    split = _split(cfg)
    torch.set_num_threads(prof.threads or torch.get_num_threads())
    t0, c0 = time.perf_counter(), time.process_time()
    net, setup, labels, scores, timings, train = _train_and_test(cfg, prof, backbone, split, torch.device("cpu"),
                                                                 False)
    out = {"seed": seed, "options": options, "overrides": overrides, "train_s": round(timings["train_s"], 2),
           "run_wall_s": round(time.perf_counter() - t0, 2), "run_cpu_s": round(time.process_time() - c0, 2),
           "default_auc": roc_metrics(labels, scores)["auc"],
           "final_losses": {k: round(v[-1], 4) for k, v in train["curves"].items()}, "scoring": {}}
    method, cfg0 = net.method, net.method.cfg
    normal = embed_all(net, setup.normal_inputs, torch.device("cpu"))
    for name in scoring:
        method.cfg = replace(cfg0, **SCORING[name])
        if method.cfg.pair != cfg0.pair:
            method.draw_partners(normal, torch.Generator().manual_seed(seed))
        t1, c1 = time.perf_counter(), time.process_time()
        s = evaluate(net, setup.test_inputs, torch.device("cpu"))
        out["scoring"][name] = {"auc": roc_metrics(labels, s)["auc"], "test_s": round(time.perf_counter() - t1, 2),
                                "test_cpu_s": round(time.process_time() - c1, 2)}
        if method.cfg.pair != cfg0.pair:
            method.cfg = cfg0
            method.draw_partners(normal, torch.Generator().manual_seed(seed))
        print(seed, options, overrides, name, out["scoring"][name], flush=True)
    method.cfg = cfg0
    out["n_val"] = {"normal": int((labels == 0).sum()), "anomaly": int((labels == 1).sum())}
    return out


def summary(runs: list[dict]) -> dict:
    """Mean AUC per (training reading, scoring reading) over seeds, and the paired difference to ddim10."""
    import numpy as np
    rows = {}
    for r in runs:
        key = ",".join(f"{k}={v}" for k, v in sorted({**r["options"], **r["overrides"]}.items())) or "default"
        for name, v in r["scoring"].items():
            rows.setdefault(key, {}).setdefault(name, []).append((r["seed"], v["auc"], v["test_s"]))
    out = {}
    for key, by in rows.items():
        ref = {s: a for s, a, _ in by.get("ddim10", [])}
        out[key] = {name: {"auc_mean": float(np.mean([a for _, a, _ in v])), "seeds": [s for s, _, _ in v],
                           "minus_ddim10": float(np.mean([a - ref[s] for s, a, _ in v if s in ref])) if ref else None,
                           "test_s_mean": float(np.mean([t for _, _, t in v]))} for name, v in by.items()}
    return out


def from_log(path: str) -> list[dict]:
    """Runs re-assembled from the lines this script prints (``seed options overrides reading {auc, ...}``), for a
    run cut short before its first write; training facts (losses, train_s) are then absent."""
    import ast
    import re
    runs: dict = {}
    pat = re.compile(r"^(\d+) (\{.*?\}) (\{.*?\}) (\w+) (\{.*\})$")
    for line in open(path, encoding="utf-8"):
        m = pat.match(line.strip())
        if m:
            seed, opts, over, name, val = int(m[1]), ast.literal_eval(m[2]), ast.literal_eval(m[3]), m[4], \
                ast.literal_eval(m[5])
            key = (seed, repr(sorted(opts.items())), repr(sorted(over.items())))
            runs.setdefault(key, {"seed": seed, "options": opts, "overrides": over, "scoring": {},
                                  "from_log": True})["scoring"][name] = val
    return list(runs.values())


def cost() -> None:
    """One ELPV general M = 10 seed 0 run (test split, cpu profile) of VPDM (its defaults) and of DPDL, back to back."""
    from dpdl.train import RunConfig, run
    out = {}
    for method in ("dpdl", "vpdm", "dpdl"):
        t0 = time.perf_counter()
        r = run(RunConfig("elpv", anomalies=10, seed=0, profile="cpu", method=method), progress=False)
        out.setdefault(method, []).append({"wall_s": round(time.perf_counter() - t0, 2), "timings": r["timings"],
                                           "auc": r["metrics"]["auc"]})
    ratio = (sum(x["timings"]["cpu_s"] for x in out["vpdm"]) / len(out["vpdm"])
             / (sum(x["timings"]["cpu_s"] for x in out["dpdl"]) / len(out["dpdl"])))
    write("vpdm_cost", {"runs": out, "cpu_s_ratio_vpdm_over_dpdl": round(ratio, 3),
                        "note": "test-split runs; AUCs here are not used for any choice"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--denoisers", nargs="+", default=["conv", "mlp"])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-4])
    ap.add_argument("--scoring", nargs="+", default=list(SCORING))
    ap.add_argument("--cost", action="store_true")
    ap.add_argument("--name", default="vpdm_readings")
    ap.add_argument("--from-log", help="re-assemble the JSON from this script's printed lines (a run cut short)")
    args = ap.parse_args()
    bad = [s for s in args.scoring if s not in SCORING]
    if bad:
        fail(f"--scoring: unknown reading(s) {', '.join(bad)}; expected some of {', '.join(SCORING)}")
    if any(d not in ("conv", "mlp") for d in args.denoisers):
        fail("--denoisers: expected conv and/or mlp")
    if args.cost:
        return cost()
    if args.from_log:
        runs = from_log(args.from_log)
        return write(args.name, {"dataset": "elpv general M=10, validation split (eval_on=val)", "profile": "cpu",
                                 "scoring_readings": {k: SCORING[k] for k in args.scoring}, "runs": runs,
                                 "summary": summary(runs), "from_log": args.from_log})
    runs = []
    for lr in args.lrs:
        for den in args.denoisers:
            for seed in args.seeds:
                over = {} if lr == 1e-4 else {"lr": lr}
                runs.append(train_and_score(seed, {"denoiser": den, "hidden": args.hidden}, over, args.scoring))
                write(args.name, {"dataset": "elpv general M=10, validation split (eval_on=val)", "profile": "cpu",
                                  "scoring_readings": {k: SCORING[k] for k in args.scoring}, "runs": runs,
                                  "summary": summary(runs)})   # after every model: a cut-short run keeps its part


if __name__ == "__main__":
    main()
