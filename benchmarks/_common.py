"""Shared bits of the benchmark scripts: where results go and what is recorded with them."""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dpdl.paths import results_dir  # noqa: E402
from dpdl.records import atomic_write_json, code_version, utc_now  # noqa: E402


def context() -> dict:
    """Host, load and code facts stored with every benchmark (the load average matters on a shared 2-core box)."""
    import torch
    return {"date": utc_now(), "code_version": code_version(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "cuda": torch.cuda.is_available(),
            "platform": platform.platform(), "loadavg_1_5_15": list(os.getloadavg()),
            "command": " ".join([Path(sys.executable).name] + sys.argv)}


def write(name: str, payload: dict) -> Path:
    path = results_dir() / "benchmarks" / f"{name}.json"
    atomic_write_json(path, {"benchmark": name, **context(), **payload})
    print(json.dumps(payload, indent=2)[:4000])
    print(f"-> {path}")
    return path


def fail(sentence: str) -> None:
    """Bad input of a benchmark script: one sentence on stderr naming the script, exit status 2, nothing written."""
    print(f"{Path(sys.argv[0]).name}: {sentence}", file=sys.stderr)
    sys.exit(2)
