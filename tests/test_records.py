"""Run records: the code version they carry."""
import shutil
import subprocess

import pytest

from dpdl.records import code_version

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_code_version_is_dirty_for_code_changes_only(tmp_path):
    (tmp_path / "dpdl").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "book").mkdir()
    (tmp_path / "dpdl" / "m.py").write_text("x = 1\n")
    (tmp_path / "results" / "run.json").write_text("{}\n")
    (tmp_path / "book" / "page.md").write_text("# page\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert code_version(tmp_path) == sha
    # a sweep rewriting a tracked record, an edited page, a new untracked file: the code is what was committed
    (tmp_path / "results" / "run.json").write_text('{"auc": 0.9}\n')
    (tmp_path / "book" / "page.md").write_text("# page, edited\n")
    (tmp_path / "dpdl" / "new.py").write_text("y = 2\n")
    assert code_version(tmp_path) == sha
    (tmp_path / "dpdl" / "m.py").write_text("x = 2\n")
    assert code_version(tmp_path) == sha + "-dirty"


def test_code_version_outside_git(tmp_path):
    from dpdl import __version__
    assert code_version(tmp_path) == f"dpdl-{__version__}"  # pytest's tmp_path is outside any repository
