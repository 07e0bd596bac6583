"""ArcAD (Han et al.): a reconstruction base (RD4AD-style reverse distillation of the cached frozen taps) calibrated
on the unit sphere by SPM (Eqs. 2-4), DGC (Eqs. 5-8) and a discriminator (Eq. 9); total Eq. (10); score: the base's
reconstruction error (Sec. 3.4).

| piece | home |
|---|---|
| taps, bottleneck, decoder, Eq. (1), score | :mod:`.base` |
| SPM, synthesis, Eq. (7) reading, DGC, focal loss, discriminator | :mod:`.calibration` |
| configs, ``ArcADBase`` (``arcad_base``), ``ArcAD`` (``arcad``), Eq. (10) | :mod:`.model` |
"""
from .model import ArcAD, ArcADBase, ArcADBaseConfig, ArcADConfig

__all__ = ["ArcAD", "ArcADBase", "ArcADBaseConfig", "ArcADConfig"]
