"""Each rewrite of a training step (issue 21) equals the expression it replaced, in float64 on random inputs.

The replaced expressions live here only, as the references (never a second copy in the package). Tolerance: the
loss terms and every parameter's gradient agree to rtol = 1e-9 (atol 1e-9 on terms, 1e-9·max|g| on gradients), at the
paper's ε = 1e-3 and at ε = 0.3, with σ at both ends of its bound (e^±3) and unbounded σ spread over e^±4; the
rewrites only regroup float64 sums, so differences are rounding (measured: at most 3.4e-13 of the largest entry).
"""
from __future__ import annotations

import math
import zlib

import pytest
import torch

from dpdl.methods.dpdl import bridge
from dpdl.methods.dpdl.heads import prototype_residual
from dpdl.methods.dpdl.model import DPDLConfig, DPDLModel
from dpdl.methods.shared.mixture import diag_gaussian_log_density

RTOL = 1e-9


# ------------------------------------------------------------------ the step before issue 21 (reference only)
def _old_residual(m, x):
    cfg = m.cfg
    sample = m.training and cfg.residual_sample
    la, mu, sigma = m._proto_params()
    flat = x.flatten(1)
    xb = m.to_bridge(flat)
    if cfg.residual in ("nearest", "bridge"):
        y = m.transport(xb) if cfg.residual == "bridge" else xb
        with torch.no_grad():
            c_star = diag_gaussian_log_density(y, mu, sigma, cfg.eps).argmax(dim=1)
        r = (y - mu[c_star]) / sigma[c_star]
    else:
        r, _, c_star = prototype_residual(xb, la, mu, sigma, cfg.eps, sample=sample)
    if cfg.bridge_input == "unit":
        r = r * flat.norm(dim=1, keepdim=True)
    return r.view_as(x), c_star


def _old_bridge_losses(m, xn, xa, la, mu, sigma):
    cfg, (pl, pm, ps) = m.cfg, m.potential.params()
    sb = psi_n = psi_a = None
    if len(xn):
        const = -0.5 * xn.shape[1] * math.log(2.0 * math.pi * cfg.eps)
        sb = cfg.eps * (bridge.sb_loss(xn.detach(), mu.detach(), pl, pm, ps, cfg.eps) + const)
        psi_n = bridge.plan_mean(xn, pl, pm, ps, cfg.eps)
    if len(xa):
        psi_a = bridge.plan_mean(xa, pl, pm, ps, cfg.eps)
    ln, la_ = _old_margin(psi_n, psi_a, la, mu, sigma, cfg.eps, cfg.dpl_margin)
    return (sb + ln if ln is not None else None), la_


def _old_soft_distance(y, la, mu, sigma, eps):
    lp = torch.log_softmax(la.double(), -1)[None, :] + diag_gaussian_log_density(y, mu, sigma, eps)
    D = y.shape[1]
    return (-2.0 * eps * (torch.logsumexp(lp, 1) + 0.5 * D * math.log(2.0 * math.pi * eps))).to(y.dtype)


def _old_margin(x_n, x_a, la, mu, sigma, eps, margin):
    ln = l_a = None
    ref = 0.0
    if x_n is not None and len(x_n):
        d_n = _old_soft_distance(x_n, la, mu, sigma, eps)
        ln, ref = d_n.mean(), d_n.mean().detach()
    if x_a is not None and len(x_a):
        l_a = torch.relu(margin + ref - _old_soft_distance(x_a, la, mu, sigma, eps)).mean()
    return ln, l_a


def _old_losses(m, x, y):
    cfg = m.cfg
    y = y.to(x.dtype).reshape(-1)
    # the heads are unchanged: the package's head_logits, fed the previous residual
    logits = m.head_logits(x, {"r": _old_residual(m, x)[0]} if m.head_r is not None else None)
    terms = {}
    if "a" in logits:
        terms["ma"] = m._binary(logits["a"], y)
    if "n" in logits:
        terms["mn"] = m._binary(logits["n"], 1.0 - y)
    if "r" in logits:
        terms["mr"] = m._binary(logits["r"], y)
    flat = x.flatten(1)
    if cfg.use_dpl:
        la, mu, sigma = m.prototypes.params()
        xb = m.to_bridge(flat)
        normal, anomal = y < 0.5, y >= 0.5
        zero = flat.sum() * 0.0
        if cfg.dpl_loss == "margin":
            scale = cfg.dpl_weight
            ln, la_ = _old_margin(xb[normal], xb[anomal], la, mu, sigma, cfg.eps, cfg.dpl_margin)
        elif cfg.dpl_loss == "bridge":
            scale = cfg.dpl_weight
            ln, la_ = _old_bridge_losses(m, xb[normal], xb[anomal], la, mu, sigma)
        else:
            per_dim = cfg.eps / (1.0 if cfg.bridge_input == "unit" else m.D)
            scale = cfg.dpl_weight * (per_dim if cfg.dpl_scale == "per_dim" else 1.0)
            ln, la_ = bridge.dpl_losses(xb[normal], xb[anomal], la, mu, sigma, cfg.eps)
        terms["dpl_n"] = scale * ln if ln is not None else zero
        terms["dpl_a"] = scale * la_ if la_ is not None else zero
    if cfg.use_dfl:
        from dpdl.methods.dpdl.dispersion import dispersion_loss
        terms["dfl"] = dispersion_loss(flat, cfg.kappa)
    total = 0
    for name, v in terms.items():
        total = total + (cfg.lam * v if name == "dfl" else v)
    terms["total"] = total
    return terms


# ------------------------------------------------------------------ the comparison
READINGS = {
    "bridge (default)": {},
    "margin + nearest": {"dpl_loss": "margin", "residual": "nearest"},
    "margin + plan": {"dpl_loss": "margin", "residual": "plan", "residual_sample": False},
    "printed": {"alpha_param": "softmax", "bridge_input": "raw", "dpl_loss": "printed", "residual": "plan",
                "log_sigma_bound": 0.0, "residual_sample": False},
    "bridge, no r head": {"heads": ("n", "a")},
    "bridge, no DPL": {"use_dpl": False},
}


def _model(opts: dict, eps: float, sigma_case: str, seed: int) -> tuple[DPDLModel, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    C, H, W, P = 6, 3, 3, 5
    m = DPDLModel(C, (H, W), DPDLConfig(prototypes=P, eps=eps, vq_iters=5, **opts)).double()
    x = torch.randn(12, C, H, W, generator=g, dtype=torch.float64)
    m.init_prototypes(torch.randn(20, C, H, W, generator=g, dtype=torch.float64), generator=g)
    with torch.no_grad():
        protos = [m.prototypes] + ([m.potential] if m.potential is not None else [])
        for p in protos:
            p.mu.add_(0.1 * torch.randn(p.mu.shape, generator=g, dtype=torch.float64))
            p.logits_alpha.add_(p.alpha_temperature * torch.randn(P, generator=g, dtype=torch.float64))
            b = m.cfg.log_sigma_bound
            if sigma_case == "spread":       # unbounded: log σ in [−4, 4]; bounded: near both ends of [−b, b]
                p.log_sigma.copy_(8.0 * torch.rand(p.log_sigma.shape, generator=g, dtype=torch.float64) - 4.0)
            elif sigma_case == "small":
                p.log_sigma.fill_(-30.0 if b else -3.0)
            elif sigma_case == "large":
                p.log_sigma.fill_(30.0 if b else 3.0)
    y = torch.tensor([0.0] * 8 + [1.0] * 4, dtype=torch.float64)
    return m.train(), x, y


def _terms_and_grads(m, x, y, fn):
    m.zero_grad(set_to_none=True)
    xx = x.clone().requires_grad_(True)
    terms = fn(m, xx, y)
    terms["total"].backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    grads["x"] = xx.grad.clone()
    return {k: v.detach().clone() for k, v in terms.items()}, grads


@pytest.mark.parametrize("reading", list(READINGS))
@pytest.mark.parametrize("eps,sigma_case", [(1e-3, "spread"), (1e-3, "small"), (1e-3, "large"), (0.3, "spread")])
def test_dpdl_step_equals_the_previous_expression(reading, eps, sigma_case):
    m, x, y = _model(READINGS[reading], eps, sigma_case, seed=zlib.crc32(repr((reading, eps, sigma_case)).encode()) % 1000)
    new_t, new_g = _terms_and_grads(m, x, y, lambda mm, xx, yy: mm.losses(xx, yy))
    old_t, old_g = _terms_and_grads(m, x, y, _old_losses)
    assert new_t.keys() == old_t.keys()
    for k in old_t:
        assert torch.isfinite(old_t[k]).all(), k
        torch.testing.assert_close(new_t[k], old_t[k], rtol=RTOL, atol=1e-9, msg=f"term {k}")
    assert new_g.keys() == old_g.keys()
    for k in old_g:
        scale = float(old_g[k].abs().max())
        torch.testing.assert_close(new_g[k], old_g[k], rtol=RTOL, atol=1e-9 * max(scale, 1.0), msg=f"grad {k}")


@pytest.mark.parametrize("reading", ["bridge (default)", "margin + nearest", "printed"])
def test_dpdl_residual_and_score_equal_the_previous_expression(reading):
    m, x, _ = _model(READINGS[reading], 1e-3, "spread", seed=3)
    m.eval()
    with torch.no_grad():
        r_new, _, c_new = m.residual(x)
        r_old, c_old = _old_residual(m, x)
    torch.testing.assert_close(r_new, r_old, rtol=0, atol=0)       # the same ops: bit-identical
    assert torch.equal(c_new, c_old)


def test_reference_detects_a_wrong_step(monkeypatch):
    """The comparison can fail: a step whose soft distance keeps the density's gradient off (a plausible slip of the
    rewrite, which shares M_r's no-grad density matrix) gives the reference's terms but not its gradients."""
    m, x, y = _model({}, 1e-3, "spread", seed=5)
    old_t, old_g = _terms_and_grads(m, x, y, _old_losses)
    right = bridge.soft_distance_from_components
    monkeypatch.setattr(bridge, "soft_distance_from_components",
                        lambda comp, la, eps, D: right(comp.detach(), la, eps, D))
    new_t, new_g = _terms_and_grads(m, x, y, lambda mm, xx, yy: mm.losses(xx, yy))
    torch.testing.assert_close(new_t["dpl_n"], old_t["dpl_n"], rtol=RTOL, atol=1e-9)
    assert any(not torch.allclose(new_g[k], old_g[k], rtol=RTOL, atol=1e-9 * max(float(old_g[k].abs().max()), 1.0))
               for k in old_g)
