"""Which way the printed Eqs. (16)-(17) push, against the margin and the bridge readings: the sign analysis of the
Deviations page.

On one batch of ELPV training features (general, M = 10, cpu profile, the reduced training split of the validation
protocol; no test image), at initialisation (one training step) and after training (the code's default reading at the
time of the run, the paper's λ; each row records it as ``reading_trained``; a cached model is reused only when it was
trained under that reading, see _trained.py), for each of the printed, the margin and the bridge reading's DPL losses
L (the bridge's L^n: ε·LightSB objective, whose inputs are detached, plus the margin term of the transported normals
ψ_p(x̂ⁿ); its L^a: the transport margin on ψ_p(x̂ᵃ)) this script takes the descent direction -∇L of
  * every normal feature xⁿ, against "towards its nearest prototype" µ_{c*} − x̂ⁿ (c* = argmax_c N(x̂; µ_c, εσ_c);
    on the unit sphere's tangent plane, see directions());
  * every prototype mean µ_c, against "towards the normals it owns" mean(x̂ⁿ : c* = c) − µ_c;
  * every seen anomaly xᵃ, against "towards its nearest prototype" µ_{c*} − x̂ᵃ;
and reports the mean cosine and the share of rows moved towards (cosine > 0). The paper's text asks the normals and
the prototypes to come together (cosine > 0) and the anomalies to be pushed away (cosine < 0).

Usage (trains the models once into $DPDL_CACHE/bench_models/, a few minutes on 2 cores):
  python benchmarks/bench_dpl_signs.py [--seed 0]   ->  results/benchmarks/dpl_signs.{json,md}
  python benchmarks/bench_dpl_signs.py --render     ->  dpl_signs.md again from dpl_signs.json (no training)
"""
from __future__ import annotations

import argparse

import torch
from _common import ROOT, write
from _trained import features, trained

from dpdl.methods.dpdl import bridge
from dpdl.methods.shared.mixture import diag_gaussian_log_density

LOSSES = {"printed L^n (Eq. 16)": ("printed", "n"), "printed L^a (Eq. 17)": ("printed", "a"),
          "margin L^n": ("margin", "n"), "margin L^a": ("margin", "a"),
          "bridge L^n (SB + transport margin)": ("bridge", "n"), "bridge L^a (transport margin)": ("bridge", "a")}


def cos(a, b):
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1)


def directions(dpdl_model, x, y, reading, term, n_normal=64):
    """{"normals"|"prototypes"|"anomalies": (mean cosine, share towards, rows)} of -∇ of one DPL term.

    The features' gradient is taken with respect to the adapter's output x (before the unit normalisation of the
    bridge's input), and "towards" is projected onto the sphere's tangent plane at x̂ (the radial part of a move
    does not change x̂): cos(-∇_x L, P⊥(µ_{c*} − x̂)), P⊥ = I − x̂x̂ᵀ.
    """
    flat = x.flatten(1).detach()
    fn = flat[y < 0.5][:n_normal].clone().requires_grad_()
    fa = flat[y >= 0.5].clone().requires_grad_()
    xn, xa = dpdl_model.to_bridge(fn), dpdl_model.to_bridge(fa)
    la, mu, sigma = (p.detach() for p in dpdl_model.prototypes.params())
    mu = mu.clone().requires_grad_()
    eps = dpdl_model.cfg.eps
    if reading == "printed":
        ln, l_a = bridge.dpl_losses(xn, xa, la, mu, sigma, eps)
    elif reading == "bridge":
        if dpdl_model.potential is None:
            return {"normals": None, "prototypes": None, "anomalies": None, "note": "no bridge potential"}
        ln, l_a = dpdl_model._bridge_losses(xn, xa, la, mu, sigma)
    else:
        ln, l_a = bridge.dpl_margin_losses(xn, xa, la, mu, sigma, eps, dpdl_model.cfg.dpl_margin)
    loss = ln if term == "n" else l_a
    if loss is None or not loss.requires_grad:
        return {"normals": None, "prototypes": None, "anomalies": None}
    loss.backward()
    unit = dpdl_model.cfg.bridge_input == "unit"

    def tangent(t, xh):
        return t - (t * xh).sum(1, keepdim=True) * xh if unit else t
    with torch.no_grad():
        xn, xa = xn.detach(), xa.detach()
        cn = diag_gaussian_log_density(xn, mu, sigma, eps).argmax(1)
        ca = diag_gaussian_log_density(xa, mu, sigma, eps).argmax(1)
        out = {}
        rows = {"normals": (fn.grad, tangent(mu[cn] - xn, xn)), "anomalies": (fa.grad, tangent(mu[ca] - xa, xa))}
        owned = [c for c in cn.unique().tolist()]
        rows["prototypes"] = (mu.grad[owned], torch.stack([xn[cn == c].mean(0) for c in owned]) - mu[owned])
        for name, (g, towards) in rows.items():
            if g is None or not bool(g.abs().sum() > 0):
                out[name] = None                       # the term does not reach these rows
                continue
            c = cos(-g, towards)
            out[name] = {"mean_cos": round(float(c.mean()), 3),
                         "share_towards": round(float((c > 0).double().mean()), 3), "rows": int(len(c))}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the committed .json")
    a = ap.parse_args()
    out = ROOT / "results" / "benchmarks" / "dpl_signs"
    if a.render:
        import json
        rows = json.loads(out.with_suffix(".json").read_text())["rows"]
        out.with_suffix(".md").write_text(render(rows, rows[0]["seed"]))
        return
    rows = []
    for stage, steps in (("initialisation (1 step)", 1), ("after training", None)):
        model, rec = trained(a.seed, steps)
        x, y, _ = features(model, a.seed)["train"]
        for label, (reading, term) in LOSSES.items():
            rows.append({"stage": stage, "loss": label, "seed": a.seed, "reading_trained": rec["method_options"],
                         **directions(model.net.method, x, y, reading, term)})
            print(rows[-1]["stage"], label, {k: rows[-1][k] for k in ("normals", "prototypes", "anomalies")},
                  flush=True)
    write("dpl_signs", {"rows": rows})
    out.with_suffix(".md").write_text(render(rows, a.seed))


def render(rows: list[dict], seed: int) -> str:
    """The Markdown of results/benchmarks/dpl_signs.md from the JSON's rows (it names the reading trained)."""
    fmt = lambda d: "" if d is None else f"{d['mean_cos']:+.2f} ({100 * d['share_towards']:.0f} %)"  # noqa: E731
    trained_as = sorted({f"`dpl_loss=\"{r['reading_trained'].get('dpl_loss')}\"`, "
                         f"`residual=\"{r['reading_trained'].get('residual')}\"`, λ = {r['reading_trained'].get('lam')}"
                         for r in rows})
    lines = ["Generated by `python benchmarks/bench_dpl_signs.py` (ELPV, general, M = 10, seed "
             f"{seed}, cpu profile, one batch of the reduced training split: 64 normals and the seen anomalies; "
             f"models trained with {'; '.join(trained_as)}; the terms of three readings measured on the same "
             "model: the printed Eqs. 16–17, the margin reading's and the bridge reading's, whose L^n is ε times "
             "LightSB's objective (inputs detached: it moves only the potential θ_ψp) plus the margin term of the "
             "transported normals ψ_p(x̂ⁿ), and whose L^a is the transport margin on ψ_p(x̂ᵃ)). Each cell: the mean "
             "cosine between the loss's descent direction and the direction towards the nearest prototype (for a prototype: towards the "
             "normals it owns), and in brackets the share of rows moved towards. The paper's text wants normals and "
             "prototypes together (+) and anomalies away (−). An empty cell: the term has no gradient on those rows "
             "(a trained margin L^a: every anomaly of the batch already lies beyond the margin, so the hinge is 0).",
             "",
             "| stage | loss | normals | prototypes | anomalies |", "|---|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['loss']} | {fmt(r['normals'])} | {fmt(r['prototypes'])} | {fmt(r['anomalies'])} |"
              for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
