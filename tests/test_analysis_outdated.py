"""The tables read only runs made with the code's settings now: a record of another reading, λ or profile field
is left out (and shown with ``include_outdated``), so no table mixes two readings of the method."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dpdl.study import analysis

RUNS = Path(__file__).resolve().parent.parent / "results" / "runs" / "cpu"
IDS = ("aitex__general__M10__s0__devnet", "elpv__general__M10__s0__full")


@pytest.fixture()
def results(tmp_path):
    for run_id in IDS:
        if not (RUNS / run_id / "run.json").is_file():
            pytest.skip(f"committed record {run_id} absent")
        (tmp_path / "runs" / "cpu" / run_id).mkdir(parents=True)
        shutil.copy(RUNS / run_id / "run.json", tmp_path / "runs" / "cpu" / run_id / "run.json")
    return tmp_path


def _edit(results, run_id, fn):
    p = results / "runs" / "cpu" / run_id / "run.json"
    rec = json.loads(p.read_text())
    fn(rec)
    p.write_text(json.dumps(rec))


def test_current_records_are_read_and_changed_ones_left_out(results):
    runs = analysis.load_runs("cpu", results)
    assert set(runs["run_id"]) == set(IDS) and (runs["outdated"] == "").all()
    _edit(results, IDS[0], lambda r: r["profile_settings"].update(lr=3e-4))        # another profile field
    _edit(results, IDS[1], lambda r: r["method_options"].update(dpl_loss="margin"))    # another DPDL reading
    assert analysis.load_runs("cpu", results).empty
    every = analysis.load_runs("cpu", results, include_outdated=True).set_index("run_id")["outdated"]
    assert "lr" in every[IDS[0]].split(",") and "method:dpl_loss" in every[IDS[1]].split(",")


def test_a_record_of_other_numerics_is_outdated(results):
    """A method's ``records_version`` (raised when a code change alters its numbers, not its options) marks the
    records made before it: a DPDL record without the field (version 1) is outdated; a DevNet one is not."""
    from dpdl.methods import method_class
    assert method_class("dpdl").records_version >= 2 and method_class("devnet").records_version == 1
    _edit(results, IDS[0], lambda r: r.pop("records_version", None))
    _edit(results, IDS[1], lambda r: r.update(records_version=method_class("dpdl").records_version))
    assert (analysis.load_runs("cpu", results)["outdated"] == "").all()
    _edit(results, IDS[1], lambda r: r.pop("records_version"))
    every = analysis.load_runs("cpu", results, include_outdated=True).set_index("run_id")["outdated"]
    assert every[IDS[0]] == "" and every[IDS[1]] == "method:records_version"
