"""Run records: one JSON file per run, written atomically, read back by the study and the book.

Schema of ``run.json`` (keys every consumer may rely on)::

    {
      "schema": 1,
      "status": "ok" | "failed",
      "error": str | null,                  # one sentence when failed
      "run_id": str,                        # stable id of the run inside a study
      "profile": "paper" | "cpu" | "smoke",
      "config": {...},                      # every parameter of dpdl.train.RunConfig
      "dataset": str, "setting": "general" | "hard", "known_class": str | null,
      "anomalies": int, "seed": int, "backbone": str,
      "variant": str,                       # "full", "no_dpl", "no_dfl", "heads=a,r", "C=16", ...
      "metrics": {"auc": float, "ap": float},
      "split": {"fingerprint": str, "train_normal": int, "train_anomaly": int,
                "test_normal": int, "test_anomaly": int, "test_anomaly_classes": [str]},
      "timings": {"total_s": float, "features_s": float, "train_s": float, "test_s": float, ...},
      "records_version": int,               # the method's numerics (MethodMixin.records_version; absent: 1)
      "code_version": str,                  # git commit (+ "-dirty")
      "date": str,                          # ISO 8601, UTC
      "host": {"device": str, "torch": str, "cpu_count": int}
    }
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .paths import REPO_ROOT

SCHEMA_VERSION = 1


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a record is meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN is refused: a record must be valid JSON)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


# What makes the numbers: a change under these paths (tracked files) marks a record's code version "-dirty". The
# results themselves (run records written by a sweep, tables) and the book's prose are not code: a sweep writing
# results/ must not mark its own later runs dirty.
CODE_PATHS = ("dpdl", "notebooks", "benchmarks", "pyproject.toml")


def code_version(root: str | os.PathLike | None = None) -> str:
    """The git commit of the code that runs (12 hex digits), with ``-dirty`` when a tracked file under
    :data:`CODE_PATHS` differs from it; ``dpdl-<version>`` outside a git checkout."""
    root = Path(root) if root is not None else REPO_ROOT
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        from . import __version__
        return f"dpdl-{__version__}"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_record(path: str | os.PathLike) -> dict:
    """The record in ``path``; a file that holds JSON but not a JSON object is a ValueError naming it."""
    with open(path, encoding="utf-8") as fh:
        rec = json.load(fh)
    if not isinstance(rec, dict):
        raise ValueError(f"{path} is not a run record: expected a JSON object, found a {type(rec).__name__}")
    return rec


def holds_finished_run(folder: str | os.PathLike) -> bool:
    """True when ``folder/run.json`` is a readable record with status ``"ok"`` (of this schema)."""
    try:
        rec = read_record(Path(folder) / "run.json")
    except (OSError, ValueError):
        return False
    return rec.get("status") == "ok" and rec.get("schema") == SCHEMA_VERSION


def write_run_files(out: str | os.PathLike, writers: dict) -> None:
    """Write a finished run's files into ``out`` so that a failure leaves ``out`` as it was.

    ``writers``: ``{file name: callable(path)}``, ``run.json`` among them. Every file is written first into a
    fresh sibling folder ``.<name>.partial-<pid>`` and only then moved into ``out`` (``run.json`` last), so an old
    finished run stays until the new one is complete. A write that fails (full disk, ``ulimit -f``) removes the
    partial folder and raises an ``OSError`` that names the file of ``out`` it was writing."""
    import errno
    import shutil
    out = Path(out)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    names = sorted(writers, key=lambda n: n == "run.json")     # run.json last
    current = out
    try:
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        for name in names:
            current = out / name
            writers[name](stage / name)
        current = out
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            current = out / name
            os.replace(stage / name, out / name)
    except (OSError, RuntimeError) as exc:   # torch.save reports a failed write as a RuntimeError
        code = getattr(exc, "errno", None) or errno.EIO
        reason = getattr(exc, "strerror", None) or _first_line_of(exc)
        raise OSError(code, f"cannot write the run's files ({reason}); the folder's earlier files are kept",
                      str(current)) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _first_line_of(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def iter_records(root: str | os.PathLike) -> Iterator[dict]:
    """Every ``run.json`` below ``root`` (sorted by path), each with ``_path`` added."""
    root = Path(root)
    if not root.exists():
        return
    for p in sorted(root.rglob("run.json")):
        rec = read_record(p)
        rec["_path"] = str(p)
        yield rec
