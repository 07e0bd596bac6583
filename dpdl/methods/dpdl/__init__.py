"""DPDL (CVPR 2025): prototypes (Eqs. 8, 15, :mod:`.prototypes`), the Schrödinger bridge (Eqs. 9-17, :mod:`.bridge`),
dispersion feature learning (Eqs. 18-19, :mod:`.dispersion`), the heads (Eqs. 20-22, :mod:`.heads`) and the model
with its total loss (Eq. 23, :mod:`.model`); :class:`DPDL` is the model under the methods' interface.
"""
from __future__ import annotations

import torch
from torch import Tensor

from dpdl.methods.base import MethodMixin
from dpdl.methods.dpdl.model import DPDLConfig, DPDLModel

__all__ = ["DPDL", "DPDLConfig", "DPDLModel"]


class DPDL(MethodMixin, DPDLModel):
    """DPDL (dpdl.methods.dpdl.model.DPDLModel) under the interface: anomaly = seen or pseudo (y > 0), Eq. (23)."""

    # 2: issue 21's step, which computes each shared quantity once (one (B, C) prototype density matrix per step);
    # the same mathematics (tests/test_step_rewrites.py), other rounding, so the records were rerun
    records_version = 2

    def init(self, normal: Tensor, generator: torch.Generator | None = None) -> None:
        self.init_prototypes(normal, generator=generator)                      # Eq. (15)

    def losses(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        if self.n_reference:   # drop reference rows (y = -1); boolean indexing is a host sync, so only if any
            x, y = x[y >= 0], y[y >= 0]
        return super().losses(x, (y > 0).to(x.dtype))
