"""HGAD's hierarchical Gaussian-mixture latent prior and its losses (supplement Eqs. 1–11; main text Eqs. 6–11).

K classes y (here: one class, or K pseudo-classes from k-means; see :mod:`dpdl.methods.hgad.model`), each with a
main centre µ_y and M intra-class centres µ_i^y = µ_1^y + Δµ_i^y (Δµ_1^y = 0), unit covariances, weights
p(y) = softmax(φ_inter) and p_i(y) = softmax(φ_intra[y]). Every log-density is
:func:`dpdl.methods.shared.mixture.diag_gaussian_log_density` (σ = 1, float64, log space); no second copy.
Shapes: z (N, D) latents, logdet (N,), y (N,) long class of each latent.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dpdl.methods.shared.mixture import diag_gaussian_log_density, log_weights


def _unit_gauss(z: Tensor, mu: Tensor) -> Tensor:
    """(N, C) log N(z_n | µ_c, I) for z (N, D), mu (C, D), float64 (the shared mixture code with σ = 1)."""
    return diag_gaussian_log_density(z, mu, torch.ones_like(mu))


def entropy_of_logits(logits: Tensor) -> Tensor:
    """(N,) Shannon entropy −Σ_c p_c log p_c of p = softmax(logits) (N, C), in log space."""
    logp = torch.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


class HierarchicalPrior(nn.Module):
    """p_Z(z) = Σ_y p(y) Σ_i p_i(y) N(z; µ_i^y, I) (supp. Eq. 5) with its losses.

    Initialisation: the K main centres lie 5 apart (|µ_y − µ_y'| = 5, each on its own coordinates, as the public
    code spreads them); Δµ ~ N(0, delta_std² I) (the code: delta_std = 1, which in 432 dimensions leaves every intra
    centre ~21 from its main centre with a responsibility of ~e^-216: never trained; we default to 0.1)."""

    def __init__(self, dim: int, n_classes: int, n_intra: int, delta_std: float = 0.1, seed: int = 0):
        super().__init__()
        self.dim, self.n_classes, self.n_intra = dim, n_classes, n_intra
        g = torch.Generator().manual_seed(seed)
        a = 5.0 / math.sqrt(2.0 * max(dim // n_classes, 1))
        mu = torch.zeros(n_classes, dim)
        for k in range(n_classes):
            mu[k, k::n_classes] = a
        self.mu = nn.Parameter(mu)                                                     # (K, D) main centres
        self.delta = nn.Parameter(delta_std * torch.randn(n_classes, n_intra - 1, dim, generator=g))  # (K, M-1, D)
        self.phi_inter = nn.Parameter(torch.zeros(n_classes))                           # (K,)   log p(y) logits
        self.phi_intra = nn.Parameter(torch.zeros(n_classes, n_intra))                  # (K, M) log p_i(y) logits

    def intra_centres(self, detach_main: bool) -> Tensor:
        """(K, M, D) µ_i^y = µ_1^y + Δµ_i^y, Δµ_1^y = 0; ``detach_main``: SG[µ_1^y] (supp. Eq. 11)."""
        main = (self.mu.detach() if detach_main else self.mu)[:, None, :]
        return torch.cat([main, main + self.delta], dim=1)

    def inter_log_joint(self, z: Tensor) -> Tensor:
        """(N, K) log p(y) + log N(z; µ_y, I): the terms of supp. Eq. (2) (log p(y) detached: the code's L_mi)."""
        return log_weights(self.phi_inter.double())[None, :] + _unit_gauss(z, self.mu)

    # -- losses (each (N,) per latent; the model averages) -------------------------------------------------------
    def nll_inter(self, z: Tensor, logdet: Tensor) -> Tensor:
        """supp. Eq. (4) (= main Eq. 6, L_g): −log Σ_y p(y) N(z; µ_y, I) − log|det J|, per dimension (÷ D, the code)."""
        ll = torch.logsumexp(self.inter_log_joint(z), dim=1)
        return -(ll + logdet.double()) / self.dim

    def mutual_info(self, z: Tensor, y: Tensor) -> Tensor:
        """supp. Eq. (10) (L_mi = −I(Y, Z) + const): −[log softmax_y(−|z − µ_y'|²/2 + c_y') − c_y], c = log p(y)
        detached (the code). With one class it is 0."""
        c = log_weights(self.phi_inter.detach().double())
        logits = c[None, :] + _unit_gauss(z, self.mu)
        return -(torch.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1) - c[y])

    def entropy(self, z: Tensor) -> Tensor:
        """main text Eq. (9) as the code computes it (L_e): the entropy of softmax_y(−|z − µ_y|²/2) (no weights).
        With one class it is 0."""
        return entropy_of_logits(_unit_gauss(z, self.mu))

    def intra_log_density(self, z: Tensor, y: Tensor, detach_main: bool = True) -> Tensor:
        """(N,) log Σ_i p_i(y) N(z; µ_i^y, I) of each latent's class y (supp. Eq. 11's mixture)."""
        centres = self.intra_centres(detach_main)                                         # (K, M, D)
        lg = _unit_gauss(z, centres.reshape(-1, self.dim)).view(-1, self.n_classes, self.n_intra)  # (N, K, M)
        lw = log_weights(self.phi_intra.double())                                          # (K, M)
        return torch.logsumexp(lg.gather(1, y[:, None, None].expand(-1, 1, self.n_intra)).squeeze(1) + lw[y], dim=1)

    def nll_intra(self, z: Tensor, logdet: Tensor, y: Tensor) -> Tensor:
        """supp. Eq. (11) (L_in): −log Σ_i p_i(y) N(z; SG[µ_1^y] + Δµ_i^y, I) − log|det J|, per dimension (÷ D)."""
        return -(self.intra_log_density(z, y, detach_main=True) + logdet.double()) / self.dim

    def log_density(self, z: Tensor) -> Tensor:
        """(N,) log p_Z(z) = log Σ_y p(y) Σ_i p_i(y) N(z; µ_i^y, I): the whole hierarchical prior (supp. Eq. 5–6)."""
        lg = _unit_gauss(z, self.intra_centres(False).reshape(-1, self.dim)).view(-1, self.n_classes, self.n_intra)
        lw = log_weights(self.phi_inter.double())[:, None] + log_weights(self.phi_intra.double())   # (K, M)
        return torch.logsumexp((lg + lw[None]).flatten(1), dim=1)
