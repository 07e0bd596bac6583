"""Batches of runs in one kernel (dpdl.study.runner.execute_batch): a run's numbers do not depend on its batch,
a run that raises is recorded failed without taking the rest of its batch with it, and the in-process feature
memo gives the bytes of the cache files."""
import json
import os

import pytest
import torch

from dpdl.study import runner
from dpdl.study.plan import RunSpec, make_batches, run_cost


def spec(seed=0, variant="full", **overrides):
    return RunSpec(dataset="synthetic", setting="general", known_class=None, anomalies=10, seed=seed,
                   variant=variant, overrides=tuple(sorted(overrides.items())), groups=("table1",))


def test_make_batches_groups_by_dataset_and_feeds_every_slot():
    a = [spec(seed=s) for s in range(7)]
    b = [RunSpec(dataset="other", setting="general", known_class=None, anomalies=1, seed=s, variant="full",
                 overrides=(), groups=()) for s in range(3)]
    batches = runner.make_batches(a + b, size=4, slots=2)
    assert [len(x) for x in batches] == [4, 3, 3]
    assert all(len({s.dataset for s in x}) == 1 for x in batches)
    assert [s.run_id for x in batches for s in x] == [s.run_id for s in a + b]   # order kept
    # few runs, two slots: two batches, not one
    assert [len(x) for x in runner.make_batches(a[:4], size=8, slots=2)] == [2, 2]
    assert runner.make_batches([], size=8, slots=2) == []


def test_make_batches_puts_the_longest_batches_first():
    knn = [RunSpec(dataset="a", seed=s, variant="knn", overrides=(("method", "knn"),)) for s in range(4)]
    dpdl = [RunSpec(dataset="b", seed=s) for s in range(6)]
    batches = make_batches(knn + dpdl, size=4, slots=2)
    # a kNN run costs 0.4 of a DPDL run: 4 DPDL runs (4.0), then the last 2 (2.0), then the 4 kNN runs (1.6)
    assert [[s.run_id for s in b] for b in batches] == [[s.run_id for s in dpdl[:4]], [s.run_id for s in dpdl[4:]],
                                                        [s.run_id for s in knn]]
    assert run_cost(knn[0]) < run_cost(dpdl[0])


def test_make_batches_cuts_a_dataset_longest_first_and_keeps_ties_in_order():
    """Mixed methods on one dataset: the DPDL runs (the costliest) fill the first batch, DevNet's another, and across
    datasets the batches come by cost, not by dataset (unmeasured datasets: RELATIVE_COST)."""
    dev = [RunSpec(dataset="a", seed=s, variant="devnet", overrides=(("method", "devnet"),)) for s in range(3)]
    dpdl = [RunSpec(dataset="a", seed=s) for s in range(3)]
    dra = [RunSpec(dataset="b", seed=s, variant="dra", overrides=(("method", "dra"),)) for s in range(3)]
    mixed = [dev[0], dpdl[0], dra[0], dev[1], dpdl[1], dra[1], dev[2], dpdl[2], dra[2]]
    batches = make_batches(mixed, size=3, slots=3)
    assert run_cost(dpdl[0]) > run_cost(dra[0]) > run_cost(dev[0])
    assert [[s.run_id for s in b] for b in batches] == [[s.run_id for s in dpdl], [s.run_id for s in dra],
                                                        [s.run_id for s in dev]]


def test_run_cost_uses_the_measured_time_of_a_dataset_and_method(monkeypatch):
    from dpdl.study import plan
    monkeypatch.setattr(plan, "_MEASURED", {"big/devnet": 2.0})
    assert run_cost(RunSpec(dataset="big", seed=0, variant="devnet", overrides=(("method", "devnet"),))) == 2.0
    assert run_cost(RunSpec(dataset="small", seed=0, variant="devnet", overrides=(("method", "devnet"),))) == \
        plan.RELATIVE_COST["devnet"]


@pytest.mark.slow
def test_batch_gives_the_numbers_of_single_runs_and_isolates_a_failing_run(tmp_path, synthetic_root):
    good_a, good_b = spec(seed=0), spec(seed=1, variant="dra", method="dra")
    bad = spec(seed=2, variant="bad", method_options={"nosuch": 1})
    out = runner.execute_batch([good_a, bad, good_b], "smoke", tmp_path / "batch")
    assert [o["run_id"] for o in out] == [good_a.run_id, bad.run_id, good_b.run_id]
    assert [o["status"] for o in out] == ["ok", "failed", "ok"]
    assert "nosuch" in out[1]["error"]           # the sentence of the run that raised, not of its neighbours
    base = tmp_path / "batch" / "runs" / "smoke"
    rec_a = json.loads((base / good_a.run_id / "run.json").read_text())
    assert rec_a["study"]["batch"]["runs"] == [good_a.run_id, bad.run_id]   # the first kernel stopped at `bad`
    assert (base / good_b.run_id / "experiment.ipynb").exists()
    assert not (base / runner.TMP).exists() or not any((base / runner.TMP).iterdir())

    alone = runner.execute_run(good_b, "smoke", tmp_path / "alone")
    assert alone["status"] == "ok"
    in_batch = json.loads((base / good_b.run_id / "scores.json").read_text())
    single = json.loads((tmp_path / "alone" / "runs" / "smoke" / good_b.run_id / "scores.json").read_text())
    assert in_batch["scores"] == single["scores"]


def test_feature_memo_gives_the_cached_bytes(tmp_path, synthetic_root):
    from dpdl.backbones import build_backbone
    from dpdl.config import get_profile
    from dpdl.data import make_split
    from dpdl.features import MEMO, FeatureCache, Item

    prof = get_profile("smoke")
    split = make_split("synthetic", setting="general", anomalies=1, seed=0)
    ext = build_backbone(prof.backbone, prof.feature_layers, image_size=prof.image_size).freeze()
    items = [Item(s) for s in split.train_normal[:6]] + [Item(split.train_normal[0], 0)]
    cache = FeatureCache(ext, prof.image_size, "synthetic", root=tmp_path)
    MEMO.clear()
    first = cache.get_taps(items)                     # extracted and written (and kept in the memo)
    assert len(MEMO.entries) == len(items)
    from_memo = FeatureCache(ext, prof.image_size, "synthetic", root=tmp_path).get_taps(items)
    MEMO.clear()
    from_disk = FeatureCache(ext, prof.image_size, "synthetic", root=tmp_path).get_taps(items)
    for t in first:
        assert torch.equal(first[t], from_disk[t]) and torch.equal(from_memo[t], from_disk[t])
    from_memo[next(iter(from_memo))].zero_()          # the caller's tensors are copies: the memo is untouched
    again = FeatureCache(ext, prof.image_size, "synthetic", root=tmp_path).get_taps(items)
    assert all(torch.equal(again[t], from_disk[t]) for t in again)
    # another dataset folder replaces the memo (one dataset at a time)
    FeatureCache(ext, prof.image_size, "elsewhere", root=tmp_path).get_taps(items[:1])
    assert len(MEMO.entries) == 1


@pytest.mark.parametrize("map_size", [None, 7])     # the smoke profile's (bilinear up), the cpu profile's (pooling)
def test_memoised_combined_maps_are_the_bits_of_a_fresh_combine(tmp_path, synthetic_root, map_size):
    """FeatureCache.get memoises each item's combined map: a later call on an overlapping, reordered subset gives the
    bits a process without the memo gives, and a map changed on disk is combined again."""
    from dpdl.backbones import build_backbone
    from dpdl.config import get_profile
    from dpdl.data import make_split
    from dpdl.features import MEMO, FeatureCache, Item

    prof = get_profile("smoke")
    split = make_split("synthetic", setting="general", anomalies=1, seed=0)
    ext = build_backbone(prof.backbone, prof.feature_layers, image_size=prof.image_size,
                         map_size=prof.map_size if map_size is None else map_size).freeze()
    items = [Item(s) for s in split.train_normal[:6]] + [Item(split.train_normal[0], 0)]
    MEMO.clear()
    FeatureCache(ext, prof.image_size, "synthetic", root=tmp_path).get_taps(items)   # on disk, taps memoised
    FeatureCache(ext, prof.image_size, "synthetic", root=tmp_path).get(items[:4])     # combined maps of items 0-3
    assert len(MEMO.maps) == 4
    order = [5, 2, 6, 0, 3, 1, 4]
    memo = FeatureCache(ext, prof.image_size, "synthetic", root=tmp_path)
    got = memo.get([items[i] for i in order])
    assert memo.stats.hits == len(order) and len(MEMO.maps) == len(items)
    MEMO.clear()
    MEMO.enabled = False
    try:
        fresh = FeatureCache(ext, prof.image_size, "synthetic", root=tmp_path).get([items[i] for i in order])
    finally:
        MEMO.enabled = True
    assert got.dtype == fresh.dtype == torch.float16 and torch.equal(got, fresh)
    assert FeatureCache(ext, prof.image_size, "synthetic", root=tmp_path).get([]).shape[1:] == fresh.shape[1:]


def test_culprit_is_the_run_that_raised(tmp_path):
    """Runs write their records in order and the first exception stops the cell (dpdl.train.run writes a failed
    record for an error mid-run, then re-raises; a bad parameter raises before anything is written)."""
    from dpdl.records import atomic_write_json

    def folders(*recs):
        out = []
        for i, rec in enumerate(recs):
            d = tmp_path / f"{len(list(tmp_path.iterdir()))}-{i}"
            d.mkdir()
            if rec is not None:
                atomic_write_json(d / "run.json", rec)
            out.append(d)
        return out

    ok, err = {"status": "ok"}, "RuntimeError: broken file"
    assert runner._culprit(folders(ok, None, None), None) is None
    assert runner._culprit(folders(ok, None, None), "ValueError: bad option") == 1           # raised in validate
    assert runner._culprit(folders(ok, {"status": "failed", "error": err}, None), err) == 1   # raised mid-run
    # a run that failed without raising (non-finite loss), then one that raised before writing
    nonfinite = {"status": "failed", "error": "non-finite loss at step 3 (dpl_n)"}
    assert runner._culprit(folders(nonfinite, None), "ValueError: bad option") == 1
    assert runner._culprit(folders(ok, ok), "NameError: x") == 1                               # a later cell failed


def test_feature_memo_rereads_an_entry_changed_on_disk(tmp_path, synthetic_root):
    """Another process rewriting (or corrupting) a cache file within this process's life: the memo is not used."""
    from dpdl.backbones import build_backbone
    from dpdl.data import make_split
    from dpdl.features import MEMO, FeatureCache, Item

    ext = build_backbone("mobilenet_v2", "last", image_size=32).freeze()
    items = [Item(s) for s in make_split("synthetic", setting="general", anomalies=1, seed=0).train_normal[:2]]
    cache = FeatureCache(ext, 32, "synthetic", root=tmp_path)
    MEMO.clear()
    cache.get_taps(items)
    cache.path(items[0]).write_bytes(b"not a tensor file")
    again = FeatureCache(ext, 32, "synthetic", root=tmp_path)
    again.get_taps(items)
    assert again.stats.rebuilt == 1 and again.stats.hits == 1


def test_kernels_get_the_allocator_setting_unless_one_is_set(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))   # _kernel_env prepends to it: undone after
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    runner._kernel_env()
    assert os.environ["GLIBC_TUNABLES"] == runner.KERNEL_MALLOC
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    runner._kernel_env()
    assert os.environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"
