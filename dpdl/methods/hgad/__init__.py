"""HGAD (Yao et al., ECCV 2024): a conditional coupling flow with a hierarchical Gaussian-mixture prior.

| piece | home |
|---|---|
| flow, positional encoding (supp. Sec. C; main Eq. 4) | :mod:`dpdl.methods.hgad.flow` |
| prior and losses (supp. Eqs. 1–11; main Eq. 9) | :mod:`dpdl.methods.hgad.prior` |
| the method, readings, score | :mod:`dpdl.methods.hgad.model` |
| HGAD+BG (BGAD's push-pull on seen anomalies) | :mod:`dpdl.methods.hgad.bg` |
"""
from dpdl.methods.hgad.model import HGAD, HGADConfig, READINGS  # noqa: F401
from dpdl.methods.hgad.bg import HGADBG, HGADBGConfig  # noqa: F401,E402
