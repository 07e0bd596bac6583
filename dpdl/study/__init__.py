"""The study that regenerates the paper's tables and figures.

* :mod:`dpdl.study.plan` – ``study.yaml`` and its expansion into runs (deterministic run ids)
* :mod:`dpdl.study.runner` – papermill execution of ``notebooks/experiment.ipynb``, atomic run folders,
  resume, local and Dask executors
* :mod:`dpdl.study.tables` – run records -> the paper's Tables 1–6 and the data of Figs. 2–3
* :mod:`dpdl.study.figures` – their plots
* :mod:`dpdl.study.commands` – ``dpdl study run | status | tables``
"""
