"""Checks of the paths and numbers a user gives, made before any work: each problem is one ``ValueError`` sentence
that names the option and what was expected (``dpdl.cli.main`` prints it and exits with status 2).

* :func:`output_dir` -- a folder the command will write into: a folder or nothing yet, on a writable file system,
  not under ``/proc``, ``/sys`` or ``/dev``. Checked by creating and removing an empty probe folder (as root,
  permission bits say nothing about read-only mounts), so nothing is left behind.
* :func:`input_dir` / :func:`input_file` -- a folder / a file that must exist and be of that kind.
* :func:`int_at_least` -- an ``argparse`` type: an integer >= a bound, refused in one sentence otherwise.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

PSEUDO_FILE_SYSTEMS = ("/proc", "/sys", "/dev")


def output_dir(path: str | os.PathLike, option: str) -> Path:
    """``path`` as a Path once it is known that a folder can be written there (it is not created)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{option} {path} is a file: expected a folder to write into (or a path not yet taken)")
    real = os.path.realpath(p)
    if any(real == top or real.startswith(top + os.sep) for top in PSEUDO_FILE_SYSTEMS):
        raise ValueError(f"{option} {path} is on a system file system ({real}): expected a folder for results")
    parent = p if p.exists() else next(a for a in p.absolute().parents if a.exists())
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: {parent} is a file, so no folder can be made there: expected a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".dpdl-write-check-", dir=parent))
    except OSError as exc:
        raise ValueError(f"{option} {path} cannot be written ({exc.strerror or exc} in {parent}): expected a "
                         "folder on a writable file system") from None
    return p


def input_dir(path: str | os.PathLike, option: str) -> Path:
    """``path`` as a Path when it is an existing folder."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"{option} {path} does not exist: expected a folder")
    if not p.is_dir():
        raise ValueError(f"{option} {path} is a file: expected a folder")
    return p


def input_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` as a Path when it is an existing file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"{option} {path} does not exist: expected a file")
    if p.is_dir():
        raise ValueError(f"{option} {path} is a folder: expected a file")
    return p


def int_at_least(low: int, high: int | None = None):
    """An ``argparse`` ``type=``: an integer >= ``low`` (and <= ``high``) written in ASCII digits (``int()`` alone
    would also take ``1_0`` and other scripts' digits)."""
    import re

    def parse(text: str) -> int:
        value = int(text) if re.fullmatch(r"\s*[+-]?[0-9]+\s*", text) else None
        if value is None or value < low or (high is not None and value > high):
            span = f">= {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"expected an integer {span} (digits 0-9), got {text!r}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def data_root(explicit: str | os.PathLike | None) -> Path | None:
    """The data root (``--data-root``, else ``$DPDL_DATA``, else ``None``) once it is known to be a folder."""
    from .paths import data_root as resolve
    root = resolve(explicit)
    if root is not None:
        input_dir(root, "--data-root" if explicit is not None else "$DPDL_DATA")
    return root


def profile_name(name: str, option: str = "--profile") -> str:
    """``name`` when it is one of the profiles of :mod:`dpdl.config`."""
    from .config import PROFILES
    if name not in PROFILES:
        raise ValueError(f"{option} {name!r} is unknown: expected one of {', '.join(PROFILES)}")
    return name


def cache_folder() -> Path:
    """The feature cache (``$DPDL_CACHE``, else ``<repo>/results/cache``) once it is known that it can be written:
    checked before any run starts, so a bad cache is one sentence instead of a failed record per run."""
    from .paths import cache_dir
    option = "$DPDL_CACHE" if os.environ.get("DPDL_CACHE") else "the feature cache"
    return output_dir(cache_dir(), option)


def check_weight_file(backbone: str, path, option: str = "--weights") -> None:
    """``path`` loads into backbone ``backbone`` (a readable state dict with its keys and shapes), else one
    ValueError naming ``option`` and the file."""
    from .backbones import build_backbone
    try:
        build_backbone(backbone, "last", weights=path, pretrained=True)
    except (ValueError, RuntimeError, KeyError) as exc:
        text = str(exc.args[0] if exc.args else exc).splitlines()[0]
        if isinstance(exc, RuntimeError):   # load_state_dict's key or shape mismatch: thousands of characters
            text = f"its tensors do not fit backbone {backbone} ({text.rstrip(':. ')[:120]})"
        raise ValueError(f"{option} {path}: {text}") from None
