"""Publishing the built site the way Jupyter Book documents it: ``ghp-import -n -p -f _build/html``.

:func:`publish` commits ``<html_dir>`` to the ``gh-pages`` branch of the git repository ``repo`` (with a
``.nojekyll`` file, so GitHub Pages serves the ``_static`` folders), and with ``push`` pushes that branch to the
remote (forced, as the docs do: the branch holds only the latest site). GitHub Pages then serves it once the
repository's *Settings → Pages* source is the ``gh-pages`` branch.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..paths import REPO_ROOT


class PublishError(Exception):
    """The site could not be published (one sentence)."""


def ghp_import_command(html_dir: Path, *, push: bool = False, branch: str = "gh-pages", remote: str = "origin",
                       message: str | None = None) -> list[str]:
    """The ``ghp-import`` command line (``-n``: add .nojekyll; ``-p -f``: push, forced)."""
    exe = Path(sys.executable).parent / "ghp-import"
    cmd = [str(exe) if exe.exists() else "ghp-import", "-n", "-b", branch, "-r", remote]
    if message:
        cmd += ["-m", message]
    if push:
        cmd += ["-p", "-f"]
    return cmd + [str(html_dir)]


def publish(html_dir=None, repo=None, *, push: bool = False, branch: str = "gh-pages", remote: str = "origin",
            message: str | None = None) -> str:
    """Commit the site in ``html_dir`` (default ``<repo>/_build/html``) to ``branch`` of ``repo``; returns the
    commit of ``branch``. Raises :class:`PublishError` when the site or ghp-import is missing or git fails."""
    repo = Path(repo or REPO_ROOT).resolve()
    html_dir = Path(html_dir or repo / "_build" / "html").resolve()
    if not (html_dir / "index.html").is_file():
        raise PublishError(f"{html_dir}/index.html is missing: build the book first (`dpdl book build`)")
    cmd = ghp_import_command(html_dir, push=push, branch=branch, remote=remote, message=message)
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        raise PublishError("ghp-import is not installed (pip install ghp-import; `make install` does)")
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PublishError(f"ghp-import failed in {repo}: {(proc.stderr or proc.stdout).strip()[-500:]}")
    head = subprocess.run(["git", "rev-parse", branch], cwd=repo, capture_output=True, text=True)
    return head.stdout.strip()
