"""One training step of every trainable method on the same cpu-profile batch, in one process on one thread.

The ``cpu`` profile trains on cached backbone maps: a step is adapter (1x1 conv -> BN -> ReLU) -> the method's
losses -> backward -> AdamW step. Every method gets the same batch of random maps of the profile's feature shape
(EfficientNet-Lite0 taps "mid+last" resized to ``map_size``) and its own labels (``method.composition``: DRA's
batch also holds reference normals). DPDL's prototypes are initialised from random "normal" maps (Eq. 15), as a
run does from the training normals.

Printed and written (results/benchmarks/step_cpu.json): each method's median ms per step over ``--repeats`` blocks of
``--steps`` steps, wall clock and the thread's CPU time (steadier on a loaded machine: other processes do not count),
its ratio to DevNet's step (issue target: <= 1.5), the FLOPs of the adapter's forward and backward pass, which every
trained method pays, and of the whole step's losses (``torch.utils.flop_counter``: matrix products and convolutions),
the rate the step achieves on them, and two ratios to DevNet's step: its FLOPs over DevNet's (the ratio at DevNet's
efficiency) and its FLOPs at this core's float32 matrix-product peak (``peak_gflops``; a bound for the counted FLOPs,
which a rewrite that changes the FLOPs moves). A rate far below DevNet's means elementwise work, small or float64
matrix products: time a rewrite may win back. kNN trains nothing and is left out.

With ``--compile`` each method is also timed with its losses under ``torch.compile`` (inductor, CPU), on a fresh
copy of the same model, and the file gets ``compiled_*`` fields: the compiled step, its speed-up over eager, the
first compilation's seconds and the relative difference of the first step's total loss from eager's (float
tolerance, not identity). Nothing in the study is compiled: this measures whether it would pay (issue 21).

Usage: python benchmarks/bench_step_cpu.py [--steps 20] [--repeats 5] [--threads 1] [--methods devnet,dpdl]
[--opt dpdl:reading=bridge] [--compile]; by default every trained method of the registry.
"""
from __future__ import annotations

import argparse
import statistics
import time

from _common import fail, write

import torch
import yaml


def build(method: str, prof, opts: dict):
    """(net, (C, H, W)): ``method`` on cached maps of the profile's shape, behind the profile's adapter."""
    from dpdl.backbones import feature_shape
    from dpdl.methods import build_method, method_class
    from dpdl.net import Adapter, Net
    c, h, w = feature_shape(prof.backbone, prof.feature_layers, prof.image_size, prof.map_size)
    torch.manual_seed(0)
    adapter = Adapter(c, prof.adapter_dim if method_class(method).uses_adapter else 0)
    return Net(adapter, build_method(method, adapter.out_channels, (h, w), opts)), (c, h, w)


def adapter_flops(net, x) -> int:
    """FLOPs of the adapter's forward and backward pass on ``x`` (torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode
    if not any(p.requires_grad for p in net.adapter.parameters()):   # raw maps (uses_adapter = False): no adapter
        return 0
    x = x.clone().requires_grad_(False)
    with FlopCounterMode(display=False) as counter:
        out = net.adapter(x)
        out.sum().backward()
    net.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def step_flops(net, x, y) -> int:
    """FLOPs of one whole step's losses, forward and backward (torch's flop counter: matrix products and
    convolutions; elementwise work counts 0, so time over these FLOPs shows how far a step is from arithmetic)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        net.losses(x, y)["total"].backward()
    net.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def peak_gflops(n: int = 1024, repeats: int = 5) -> float:
    """This core's float32 matrix-product rate (GFLOP/s, thread CPU time, best of ``repeats`` blocks of three
    n x n products): the rate a step's counted FLOPs could at best run at."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        c0 = time.thread_time()
        for _ in range(3):
            a @ b
        best = min(best, (time.thread_time() - c0) / 3)
    return 2 * n ** 3 / best / 1e9


def time_method(method: str, prof, x_all, opts: dict, steps: int, repeats: int, compiled: bool = False) -> dict:
    """Median ms per step (wall and thread CPU) of ``method``; with ``compiled`` its losses run under torch.compile."""
    net, _ = build(method, prof, opts)
    comp = net.method.composition(prof, 10, True)
    y = comp.labels()
    x = x_all[: len(y)]
    if type(net.method).init.__qualname__ != "MethodMixin.init":
        with torch.no_grad():
            net.method.init(net.eval().embed(x_all), generator=torch.Generator().manual_seed(0))
    net.train()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=prof.lr,
                            weight_decay=prof.weight_decay)
    losses = torch.compile(net.losses) if compiled else net.losses
    first = []

    def step():
        terms = losses(x, y)
        first.append(float(terms["total"].detach()))
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()

    t0 = time.perf_counter()
    step()                                      # compiles, when compiled
    compile_s = time.perf_counter() - t0
    for _ in range(2):
        step()
    blocks, cpu_blocks = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(steps):
            step()
        blocks.append(1000 * (time.perf_counter() - t0) / steps)
        cpu_blocks.append(1000 * (time.thread_time() - c0) / steps)
    out = {"step_ms": statistics.median(blocks), "blocks_ms": blocks, "step_cpu_ms": statistics.median(cpu_blocks),
           "cpu_blocks_ms": cpu_blocks, "batch": int(len(y)), "first_total": first[0]}
    if compiled:
        return {**out, "compile_s": compile_s}
    flops = step_flops(net, x, y)
    return {**out, "flops_adapter": adapter_flops(net, x), "flops_step": flops,
            "gflops_per_s": flops / 1e6 / out["step_cpu_ms"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    from dpdl.methods import METHODS, method_class
    every = ",".join(m for m in METHODS if method_class(m).trainable)
    ap.add_argument("--methods", default=every, help=f"comma-separated (default: every trained method: {every})")
    ap.add_argument("--opt", action="append", default=[], help="METHOD:KEY=VALUE, a method option (repeatable)")
    ap.add_argument("--compile", action="store_true", help="also time each method's losses under torch.compile")
    a = ap.parse_args()
    if a.steps < 1 or a.repeats < 1 or a.threads < 1:
        fail("--steps, --repeats and --threads must be integers >= 1")
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    if "devnet" not in methods:
        fail("--methods must include devnet: every step is reported as a ratio to DevNet's")
    opts: dict[str, dict] = {m: {} for m in methods}
    for item in a.opt:
        head, _, kv = item.partition(":")
        key, eq, value = kv.partition("=")
        if head not in opts or not eq:
            fail(f"--opt {item!r} must be METHOD:KEY=VALUE with METHOD one of {', '.join(methods)}")
        opts[head][key] = yaml.safe_load(value)
    torch.set_num_threads(a.threads)
    from dpdl.config import get_profile
    prof = get_profile("cpu")
    _, (c, h, w) = build("devnet", prof, {})
    gen = torch.Generator().manual_seed(0)
    x_all = torch.randn(max(64, prof.batch_size + 16), c, h, w, generator=gen)
    res = {m: time_method(m, prof, x_all, opts[m], a.steps, a.repeats) for m in methods}
    for m in methods if a.compile else ():
        try:
            comp = time_method(m, prof, x_all, opts[m], a.steps, a.repeats, compiled=True)
        except Exception as exc:        # a method that inductor cannot compile: said, not fatal
            res[m]["compile_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            continue
        e = res[m]
        e.update(compiled_step_ms=comp["step_ms"], compiled_step_cpu_ms=comp["step_cpu_ms"],
                 compile_s=comp["compile_s"], compiled_speedup_cpu=e["step_cpu_ms"] / comp["step_cpu_ms"],
                 compiled_first_total_rel_diff=abs(comp["first_total"] - e["first_total"]) / max(abs(e["first_total"]),
                                                                                             1e-12))
    base, base_cpu = res["devnet"]["step_ms"], res["devnet"]["step_cpu_ms"]
    peak = peak_gflops()
    for m, r in res.items():
        r["ratio_to_devnet"] = r["step_ms"] / base
        r["cpu_ratio_to_devnet"] = r["step_cpu_ms"] / base_cpu
        # its FLOPs over DevNet's: the ratio the step would have at DevNet's efficiency (DevNet's GFLOP/s)
        r["flops_ratio_to_devnet"] = r["flops_step"] / res["devnet"]["flops_step"]
        # the ratio its counted FLOPs would give at this core's float32 matrix-product peak (a bound for these FLOPs;
        # a rewrite that changes the FLOPs moves it)
        r["peak_ratio_to_devnet"] = r["flops_step"] / (peak * 1e6) / base_cpu
        print(f"{m:8s} {r['step_ms']:7.2f} ms/step  x{r['ratio_to_devnet']:.2f} DevNet  |  CPU time "
              f"{r['step_cpu_ms']:7.2f} ms/step  x{r['cpu_ratio_to_devnet']:.2f} DevNet  "
              f"(adapter fwd+bwd {r['flops_adapter'] / 1e9:.2f} GFLOP; whole step {r['flops_step'] / 1e9:.2f} GFLOP, "
              f"{r['gflops_per_s']:.1f} GFLOP/s; FLOPs x{r['flops_ratio_to_devnet']:.2f} DevNet's, "
              f"x{r['peak_ratio_to_devnet']:.2f} DevNet's step at the {peak:.0f} GFLOP/s peak)"
              + (f"  | compiled CPU {r['compiled_step_cpu_ms']:7.2f} ms/step, speed-up x{r['compiled_speedup_cpu']:.2f}"
                 if "compiled_step_cpu_ms" in r else ""))
    write("step_cpu", {"profile": "cpu", "threads": a.threads, "steps": a.steps, "repeats": a.repeats,
                       "compiled": a.compile,
                       "feature_map": [int(c), int(h), int(w)], "options": opts, "results": res,
                       "peak_gflops_per_s": peak,
                       "target_ratio": 1.5,
                       "note": "median ms per training step (adapter -> losses -> backward -> AdamW) over the "
                               "blocks, wall clock (step_ms) and the thread's CPU time (step_cpu_ms: on a shared, "
                               "loaded machine the steadier of the two); the same random maps for every method; "
                               "one process"})


if __name__ == "__main__":
    main()
