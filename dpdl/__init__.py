"""DPDL: a reference reproduction of Distribution Prototype Diffusion Learning (CVPR 2025).

Concept modules (each names the paper's equations it implements):

* :mod:`dpdl.methods.dpdl.prototypes` – multi-Gaussian prototypes and their VQ initialisation (Eqs. 8, 15)
* :mod:`dpdl.methods.dpdl.bridge` – the Schrödinger bridge to the prototypes (Eqs. 9–14, 16–17)
* :mod:`dpdl.methods.dpdl.dispersion` – dispersion feature learning on the hypersphere (Eqs. 18–19)
* :mod:`dpdl.methods.dpdl.heads` – the three MIL score heads and the anomaly score (Eqs. 20–23)
* :mod:`dpdl.methods.dpdl.model` – the pure torch module that assembles them
* :mod:`dpdl.train` – the training loop, profiles and run records
* :mod:`dpdl.data` – the OSAD data protocol (nine datasets, general/hard settings)
* :mod:`dpdl.study` – the sweep that regenerates the paper's tables and figures
"""

__version__ = "0.1.0"
