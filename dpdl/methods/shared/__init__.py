"""Pieces that several methods share, written once: score heads (:mod:`.heads`), Gaussian-mixture log-densities
(:mod:`.mixture`: DPDL's prototypes and bridge, HGAD's prior), the unit hypersphere and the vMF (:mod:`.sphere`:
DPDL's DFL, ArcAD) and entropic optimal transport (:mod:`.sinkhorn`: ArcAD, VPDM).
"""
