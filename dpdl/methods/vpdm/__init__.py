"""VPDM (Li et al., ICML 2024): vague prototypes by optimal transport steer a prototype-conditioned diffusion.

| file | what |
|---|---|
| :mod:`.schedule` | Eqs. (13)-(15), Alg. 2's reparameterisation and DDIM, errata corrected (float64 schedule) |
| :mod:`.vpot` | VPOT: T_down, Eqs. (7)-(12) on the shared Sinkhorn; test-time plans with fixed partners |
| :mod:`.denoiser` | ε_θ(x^t, ŷ, t) (the paper gives no architecture) |
| :mod:`.model` | :class:`VPDM`: Alg. 1 (Eq. 17), Alg. 2, the score of Sec. 3.4 |
"""
from dpdl.methods.vpdm.model import VPDM, VPDMConfig

__all__ = ["VPDM", "VPDMConfig"]
