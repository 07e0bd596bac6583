"""MathJax 3, served from ``book/_static/mathjax`` so that the site needs no CDN."""
from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

MATHJAX_VERSION = "3.2.2"
# The parts of the npm package `mathjax` the site needs: the TeX-to-CommonHTML bundle, its fonts, the TeX
# extensions it may autoload, the menu and the accessibility components it may load on demand.
MATHJAX_PARTS = ("es5/tex-chtml.js", "es5/output/chtml", "es5/input/tex/extensions", "es5/ui",
                 "es5/a11y", "es5/adaptors", "LICENSE")



class MathJaxError(Exception):
    """MathJax is missing and cannot be fetched (one sentence)."""


def ensure_mathjax(static_dir: Path) -> Path:
    """MathJax 3 in ``static_dir/mathjax`` (committed; fetched with ``npm pack mathjax@3.2.2`` when missing)."""
    target = static_dir / "mathjax"
    if (target / "tex-chtml.js").is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise MathJaxError(f"MathJax is missing from {target} and npm is not installed to fetch it "
                        f"(run `npm pack mathjax@{MATHJAX_VERSION}` and unpack its es5/ folder there)")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent"], cwd=tmp,
                              capture_output=True, text=True)
        tgz = Path(tmp) / f"mathjax-{MATHJAX_VERSION}.tgz"
        if proc.returncode != 0 or not tgz.is_file():
            raise MathJaxError(f"MathJax is missing from {target} and `npm pack mathjax@{MATHJAX_VERSION}` failed: "
                            f"{(proc.stderr or proc.stdout).strip()[-300:]}")
        with tarfile.open(tgz) as tar:
            tar.extractall(tmp, filter="data")
        pkg = Path(tmp) / "package"
        staging = static_dir / ".mathjax.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        for part in MATHJAX_PARTS:
            src = pkg / part
            dst = staging / (part[len("es5/"):] if part.startswith("es5/") else part)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst)
            else:
                shutil.copy2(src, dst)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


