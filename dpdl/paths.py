"""Where things live: the repository, ../shared, the data root, caches (also matplotlib's and IPython's) and results."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """The project's shared material: ``$DPDL_SHARED`` or ``<repo>/../shared``."""
    env = os.environ.get("DPDL_SHARED")
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared").resolve()


def shared_data_dir() -> Path:
    """BrainMRI and SDD as shipped in ``../shared/data`` (read only, never copied)."""
    return shared_dir() / "data"


def paper_tables_dir() -> Path:
    """The paper's numbers as checked CSV files (``../shared/paper_tables``)."""
    return shared_dir() / "paper_tables"


def data_root(explicit: str | os.PathLike | None = None) -> Path | None:
    """The user's data root: the explicit argument, else ``$DPDL_DATA``, else ``None``."""
    value = explicit if explicit is not None else os.environ.get("DPDL_DATA")
    return Path(value).expanduser().resolve() if value else None


def results_dir() -> Path:
    """Run records, tables and figures: ``$DPDL_RESULTS`` or ``<repo>/results``."""
    env = os.environ.get("DPDL_RESULTS")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "results"


def cache_dir() -> Path:
    """Feature caches and generated data: ``$DPDL_CACHE`` or ``<repo>/results/cache`` (git-ignored)."""
    env = os.environ.get("DPDL_CACHE")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "results" / "cache"


def tool_config_dirs() -> dict[str, Path]:
    """Where matplotlib and IPython (in the notebooks' kernels) keep their config and caches: inside
    :func:`cache_dir`, not in ``$HOME`` (``MPLCONFIGDIR``, ``IPYTHONDIR``)."""
    return {"MPLCONFIGDIR": cache_dir() / "config" / "matplotlib", "IPYTHONDIR": cache_dir() / "config" / "ipython"}


def set_tool_config_env() -> None:
    """Point ``MPLCONFIGDIR`` and ``IPYTHONDIR`` at :func:`tool_config_dirs` unless the user set them (inherited by
    every kernel and child process started later)."""
    for var, folder in tool_config_dirs().items():
        os.environ.setdefault(var, str(folder))
