"""dpdl.methods.dpdl.model: Eq. (23) assembly, ablation switches, the inference score, config validation, finiteness."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dpdl.methods.dpdl import bridge
from dpdl.methods.dpdl.dispersion import dispersion_loss
from dpdl.methods.dpdl.model import PRINTED_READING, DPDLConfig, DPDLModel, check_finite

CF, HW = 8, (5, 5)
P = PRINTED_READING        # these tests check the printed Eqs. (16)-(17), (22); tests/test_readings.py the others


def make(cfg=None, seed=0, n=30):
    torch.manual_seed(seed)
    m = DPDLModel(CF, HW, cfg or DPDLConfig(prototypes=4, eps=0.05, **P))
    g = torch.Generator().manual_seed(seed)
    normal = torch.relu(torch.randn(n, CF, *HW, generator=g))
    m.init_prototypes(normal, generator=torch.Generator().manual_seed(0))
    return m


def batch(B=6, n_anom=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(B, CF, *HW, generator=g))
    y = torch.zeros(B)
    y[B - n_anom:] = 1
    return x, y


def proto_grads(m):
    return [p.grad for p in m.prototypes.parameters()]


@pytest.mark.parametrize("kw,name", [(dict(eps=0), "eps"), (dict(eps=-1e-3), "eps"), (dict(kappa=-1), "kappa"),
                                     (dict(prototypes=0), "prototypes"), (dict(heads=()), "heads"),
                                     (dict(heads=("a", "x")), "heads"), (dict(lam=-1), "lam"),
                                     (dict(topk_ratio=0), "topk_ratio"), (dict(dpl_scale="sum"), "dpl_scale"),
                                     (dict(binary_loss="hinge"), "binary_loss")])
def test_config_validation(kw, name):
    with pytest.raises(ValueError, match=name):
        DPDLConfig(**kw)


def test_config_defaults_and_heads_string():
    c = DPDLConfig()
    assert (c.prototypes, c.eps, c.kappa, c.lam, c.use_dpl, c.use_dfl, c.heads, c.topk_ratio, c.dpl_scale,
            c.binary_loss) == (32, 1e-3, 10.0, 0.01, True, True, ("n", "a", "r"), 0.1, "per_dim", "deviation")
    assert (c.alpha_param, c.bridge_input, c.dpl_loss, c.residual) == ("eps_scaled", "unit", "bridge", "bridge")
    assert DPDLConfig(heads="r,a").heads == ("a", "r")


def test_losses_are_the_terms_of_eq23():
    m = make(DPDLConfig(prototypes=4, eps=0.05, lam=0.7, binary_loss="bce", **P))
    x, y = batch()
    m.eval()                                       # deterministic residual so the terms can be recomputed
    terms = m.losses(x, y)
    assert set(terms) == {"ma", "mn", "mr", "dpl_n", "dpl_a", "dfl", "total"}
    lo = m.head_logits(x)
    torch.testing.assert_close(terms["ma"], F.binary_cross_entropy_with_logits(lo["a"], y))
    torch.testing.assert_close(terms["mn"], F.binary_cross_entropy_with_logits(lo["n"], 1 - y))
    torch.testing.assert_close(terms["mr"], F.binary_cross_entropy_with_logits(lo["r"], y))
    la, mu, sigma = m.prototypes.params()
    flat, scale = x.flatten(1), 0.05 / m.D
    torch.testing.assert_close(terms["dpl_n"], scale * bridge.dpl_normal_loss(flat[:4], la, mu, sigma, 0.05))
    torch.testing.assert_close(terms["dpl_a"], scale * bridge.dpl_anomaly_loss(flat[4:], la, mu, sigma, 0.05))
    torch.testing.assert_close(terms["dfl"], dispersion_loss(flat, 10.0))
    expect = terms["ma"] + terms["mn"] + terms["mr"] + terms["dpl_n"] + terms["dpl_a"] + 0.7 * terms["dfl"]
    torch.testing.assert_close(terms["total"], expect)
    raw = make(DPDLConfig(prototypes=4, eps=0.05, dpl_scale="none", **P))
    raw.eval()
    rt = raw.losses(x, y)
    assert rt["dpl_n"].item() == pytest.approx(terms["dpl_n"].item() / scale, rel=1e-4)


def test_batch_without_anomalies_has_zero_anomaly_term():
    m = make()
    x, y = batch(n_anom=0)
    t = m.losses(x, y)
    assert t["dpl_a"].item() == 0.0 and t["dpl_n"].item() != 0.0


def test_no_dpl_removes_terms_and_freezes_prototypes():
    m = make(DPDLConfig(prototypes=4, eps=0.05, use_dpl=False, **P))
    mu0 = m.prototypes.mu.detach().clone()
    x, y = batch()
    t = m.losses(x, y)
    assert "dpl_n" not in t and "dpl_a" not in t and "mr" in t
    t["total"].backward()
    assert all(g is None or not g.any() for g in proto_grads(m))
    assert m.head_r.conv.weight.grad is not None
    torch.testing.assert_close(m.prototypes.mu.detach(), mu0)
    # with DPL on, the prototypes do receive gradient (α's gradient can vanish exactly when every row's
    # plan weights are one-hot on the same component, so it is checked on an all-normal batch)
    m2 = make()
    m2.losses(x, y)["total"].backward()
    assert all(g is not None for g in proto_grads(m2))
    assert m2.prototypes.mu.grad.abs().sum() > 0 and m2.prototypes.log_sigma.grad.abs().sum() > 0
    m3 = make()
    m3.losses(x, torch.zeros(len(y)))["total"].backward()
    assert m3.prototypes.logits_alpha.grad.abs().sum() > 0


def test_no_dfl_removes_term():
    x, y = batch()
    m = make(DPDLConfig(prototypes=4, eps=0.05, use_dfl=False, **P))
    m.eval()
    t = m.losses(x, y)
    assert "dfl" not in t
    torch.testing.assert_close(t["total"], sum(v for k, v in t.items() if k != "total"))


def test_heads_subset_removes_params_and_changes_score():
    x, y = batch()
    m = make(DPDLConfig(prototypes=4, eps=0.05, heads=("a",), **P))
    assert m.head_n is None and m.head_r is None
    t = m.losses(x, y)
    assert {"mn", "mr"}.isdisjoint(t) and "ma" in t
    m.eval()
    torch.testing.assert_close(m.score(x), m.head_a(x))
    full = make()
    full.eval()
    lo = full.head_logits(x)
    torch.testing.assert_close(full.score(x), lo["a"] + lo["r"] - lo["n"])
    out = full(x)
    assert set(out) == {"a", "n", "r", "score"}
    m_nr = make(DPDLConfig(prototypes=4, eps=0.05, heads=("n", "r"), **P))
    m_nr.losses(x, y)["total"].backward()
    assert m_nr.head_a is None and m_nr.head_n.fc1.weight.grad is not None
    m_nr.eval()
    lo = m_nr.head_logits(x)
    torch.testing.assert_close(m_nr.score(x), lo["r"] - lo["n"])


def test_score_deterministic_and_residual_stochastic_in_training():
    m = make()
    x, _ = batch()
    m.train()
    s1, s2 = m.score(x), m.score(x)
    torch.testing.assert_close(s1, s2)
    assert m.training                                    # score() restores the mode
    r1, _, _ = m.residual(x)
    r2, _, _ = m.residual(x)
    assert not torch.equal(r1, r2)
    assert r1.shape == x.shape


def test_requires_init_and_shape_checks():
    m = DPDLModel(CF, HW, DPDLConfig(prototypes=4))
    x, y = batch()
    with pytest.raises(RuntimeError, match="init_prototypes"):
        m.losses(x, y)
    with pytest.raises(ValueError, match="shape"):
        make().losses(x[:, :3], y)


def test_check_finite():
    check_finite({"ma": torch.tensor(1.0), "total": 2.0}, step=3)
    with pytest.raises(FloatingPointError, match=r"step 17: loss term 'dpl_a' is not finite \(nan\)"):
        check_finite({"ma": torch.tensor(1.0), "dpl_a": torch.tensor(float("nan"))}, 17)
    with pytest.raises(FloatingPointError, match="'total' is not finite"):
        DPDLModel.check_finite({"total": torch.tensor(float("inf"))}, 1)


@pytest.mark.parametrize("reading", [PRINTED_READING, {}], ids=["printed", "default"])
def test_paper_settings_finite_float32(reading):
    """x (B, 512, 14, 14): D = 100352, C = 32, ε = 1e-3, κ = 10; total and every gradient finite."""
    torch.manual_seed(0)
    m = DPDLModel(512, (14, 14), DPDLConfig(**reading))
    g = torch.Generator().manual_seed(0)
    m.init_prototypes(torch.relu(torch.randn(40, 512, 14, 14, generator=g)), generator=torch.Generator().manual_seed(0))
    x = torch.relu(torch.randn(6, 512, 14, 14, generator=g)).requires_grad_(True)
    y = torch.tensor([0, 0, 0, 0, 1, 1.0])
    t = m.losses(x, y)
    check_finite(t, 0)
    assert all(abs(v.item()) < 100 for v in t.values())   # the ε/D scaling makes the DPL terms O(1)
    t["total"].backward()
    assert torch.isfinite(x.grad).all()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert torch.isfinite(m.score(x.detach())).all()


def test_deviation_binary_loss_is_used_for_every_head():
    from dpdl.methods.shared.heads import deviation_loss
    m = make(DPDLConfig(prototypes=4, eps=0.05, binary_loss="deviation", **P))
    x, y = batch()
    m.eval()
    terms, lo = m.losses(x, y), m.head_logits(x)
    torch.testing.assert_close(terms["ma"], deviation_loss(lo["a"], y))
    torch.testing.assert_close(terms["mn"], deviation_loss(lo["n"], 1 - y))   # normality target, as with BCE
    torch.testing.assert_close(terms["mr"], deviation_loss(lo["r"], y))
    assert terms["ma"].item() != pytest.approx(F.binary_cross_entropy_with_logits(lo["a"], y).item())
