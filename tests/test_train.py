"""The training loop on the synthetic data (``smoke`` profile): learns, is deterministic, fails clearly."""
from __future__ import annotations

import json

import pytest
import torch

from dpdl.records import read_record
from dpdl.batches import batch_counts
from dpdl.train import RunConfig, parse_heads, run, variant_tag


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    rec = run(RunConfig("synthetic", profile="smoke", anomalies=5, seed=0, out=str(out)), progress=False)
    return out, rec


def test_smoke_run_learns_and_writes_a_record(smoke_run):
    out, rec = smoke_run
    assert rec["status"] == "ok", rec["error"]
    assert rec["metrics"]["auc"] > 0.7
    disk = read_record(out / "run.json")
    assert disk["metrics"] == rec["metrics"]
    for key in ("schema", "run_id", "profile", "profile_settings", "deviations", "config", "dataset", "setting",
                "anomalies", "seed", "backbone", "variant", "split", "timings", "code_version", "date", "host"):
        assert key in disk
    assert disk["backbone"] == "mobilenet_v2" and disk["variant"] == "full" and disk["profile"] == "smoke"
    assert disk["split"]["train_anomaly"] == 5 and len(disk["split"]["fingerprint"]) == 16
    for key in ("features_s", "train_s", "test_s", "total_s", "step_ms", "step_data_ms"):
        assert key in disk["timings"]
    assert (out / "model.pt").is_file() and (out / "scores.json").is_file()


def test_same_seed_same_auc(smoke_run):
    _, rec = smoke_run
    again = run(RunConfig("synthetic", profile="smoke", anomalies=5, seed=0), progress=False)
    assert again["metrics"] == rec["metrics"]
    assert again["losses"] == rec["losses"]


def test_non_finite_loss_fails_the_run_naming_step_and_term(tmp_path, monkeypatch):
    from dpdl.methods.dpdl import model
    calls = {"n": 0}
    real = model.dispersion_loss

    def bad(z, kappa):
        calls["n"] += 1
        v = real(z, kappa)
        return v * float("nan") if calls["n"] >= 3 else v

    monkeypatch.setattr(model, "dispersion_loss", bad)
    rec = run(RunConfig("synthetic", profile="smoke", anomalies=5, seed=0, out=str(tmp_path)), progress=False)
    assert rec["status"] == "failed"
    assert "step 2" in rec["error"] and "dfl" in rec["error"]
    disk = read_record(tmp_path / "run.json")
    assert disk["status"] == "failed" and disk["error"] == rec["error"]
    assert not (tmp_path / "model.pt").exists()


def test_bad_input_is_one_clear_error(tmp_path, smoke_run):
    with pytest.raises(ValueError, match="unknown backbone"):
        run(RunConfig("synthetic", profile="smoke", backbone="vgg"), progress=False)
    with pytest.raises(ValueError, match="unknown profile"):
        run(RunConfig("synthetic", profile="gpu"), progress=False)
    with pytest.raises(ValueError, match="bad heads"):
        run(RunConfig("synthetic", profile="smoke", heads="a,x"), progress=False)
    with pytest.raises(ValueError):
        run(RunConfig("synthetic", profile="smoke", anomalies=10 ** 6), progress=False)
    out, rec = smoke_run
    before = (out / "run.json").read_text()
    with pytest.raises(ValueError, match="already holds a finished run"):
        run(RunConfig("synthetic", profile="smoke", anomalies=5, out=str(out)), progress=False)
    assert (out / "run.json").read_text() == before


def test_helpers():
    assert parse_heads("r, a") == ("a", "r")
    assert batch_counts(48, 10, 0.5, True) == (32, 8, 8)
    assert batch_counts(48, 0, 0.5, True) == (32, 0, 16)
    assert variant_tag(RunConfig("x")) == "full"


@pytest.mark.parametrize("batch,share", [(48, 0.5), (48, 0.25), (24, 0.5), (30, 0.75)])
def test_batch_counts_dra_slots_against_the_protocol(batch, share):
    """pseudo_slots="normal": the sampler's two thirds normal, of which ``share`` become pseudo anomalies (DRA)."""
    drawn_normal = round(batch * 2 / 3)
    converted = round(drawn_normal * share)
    assert batch_counts(batch, 10, share, True, "normal") == (drawn_normal - converted, batch - drawn_normal, converted)
    assert batch_counts(batch, 0, share, True, "normal") == (drawn_normal - converted, 0, batch - drawn_normal + converted)
    assert batch_counts(batch, 10, share, False, "normal") == (drawn_normal, batch - drawn_normal, 0)
    for m in (0, 1, 10):
        assert sum(batch_counts(batch, m, share, True, "normal")) == batch
    with pytest.raises(ValueError, match="pseudo_slots"):
        batch_counts(batch, 10, share, True, "both")


def test_variant_tags():
    assert variant_tag(RunConfig("x", use_dpl=False)) == "no_dpl"
    assert variant_tag(RunConfig("x", heads="a,r")) == "heads=a,r"
    assert variant_tag(RunConfig("x", prototypes=16)) == "C=16"
    assert variant_tag(RunConfig("x", eps=0.01)) == "eps=0.01"
    assert variant_tag(RunConfig("x", kappa=1)) == "kappa=1"
    assert variant_tag(RunConfig("x", lam=0.1)) == "lam=0.1"


def test_cli_train_and_score(tmp_path, capsys, synthetic_root):
    from dpdl.cli import main
    out = tmp_path / "cli"
    rc = main(["train", "--dataset", "synthetic", "--profile", "smoke", "--anomalies", "3", "--seed", "1",
               "--heads", "a,r", "--out", str(out), "--quiet"])
    assert rc == 0
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "ok" and rec["variant"] == "heads=a,r" and rec["seed"] == 1
    normal = sorted((synthetic_root / "test" / "good").iterdir())[:3]
    anomal = sorted((synthetic_root / "test" / "spot").iterdir())[:3]
    capsys.readouterr()
    rc = main(["score", "--model", str(out), "--images", *map(str, normal + anomal), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["scores"]) == 6 and all(isinstance(r["score"], float) for r in res["scores"])
    # the saved model gives the scores the run recorded for the same test images
    saved = json.loads((out / "scores.json").read_text())
    by_key = dict(zip(saved["keys"], saved["scores"]))
    key = next(k for k in by_key if k.endswith(normal[0].name) and "/good/" in k)
    assert res["scores"][0]["score"] == pytest.approx(by_key[key], abs=1e-3)
    assert main(["train", "--dataset", "synthetic", "--profile", "smoke", "--backbone", "nope",
                 "--out", str(tmp_path / "x")]) == 2
    assert main(["score", "--model", str(tmp_path / "nowhere"), "--images", str(normal[0])]) == 2


def test_missing_resnet_weights_is_a_clear_error_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("DPDL_RESNET18_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*a, **k):
        raise OSError("no network")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(FileNotFoundError, match="ResNet-18 ImageNet weights are not on this machine.*checkpoints/"):
        run(RunConfig("synthetic", profile="smoke", backbone="resnet18", out=str(tmp_path / "o")), progress=False)
    assert not (tmp_path / "o").exists()


def _d4_images(v):
    """The 8 images of one map (C, H, H) under D4, in the code order of d4_augment."""
    return [torch.rot90(v.flip(-1) if c >= 4 else v, c % 4, dims=(-2, -1)) for c in range(8)]


def test_d4_augment_rotates_or_flips_each_map_and_is_seeded():
    from dpdl.batches import d4_augment
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, 5, 5, generator=g)
    out = d4_augment(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and not torch.equal(out, x)
    used = []
    for i in range(len(x)):
        hits = [c for c, im in enumerate(_d4_images(x[i])) if torch.equal(im, out[i])]
        assert len(hits) == 1, f"row {i} is not a D4 image of its input"
        used.append(hits[0])
    counts = torch.bincount(torch.tensor(used), minlength=8)
    assert (counts > 25).all()                       # all 8 elements drawn, roughly uniformly (E = 50)
    torch.testing.assert_close(d4_augment(x, torch.Generator().manual_seed(1)), out)   # same seed, same maps
    with pytest.raises(ValueError, match="square"):
        d4_augment(torch.zeros(2, 3, 4, 5), g)


@pytest.mark.parametrize("comp, n_seen, n_pseudo, augment", [
    ((5, 2, 2, 3), 2, 7, "d4"),      # DRA: reference rows first
    ((5, 0, 4, 0), 0, 7, "d4"),      # M = 0: no seen anomalies
    ((4, 4, 0, 0), 3, 0, "d4"),      # DevNet: no pseudo anomalies
    ((5, 2, 2, 0), 2, 7, "none"),
])
def test_feature_batches_are_the_indexed_rows_turned_by_d4(comp, n_seen, n_pseudo, augment):
    """A batch equals its rows taken from each set, cast to float32 and turned map by map with rot90/flip (an
    independent computation from the same seeded draws), reference normals first."""
    from dpdl.batches import AUG_SEED_OFFSET, Composition, FeatureBatches, _Streams
    g = torch.Generator().manual_seed(3)
    f_norm, f_seen, f_pseudo = (torch.randn(n, 4, 3, 3, generator=g).half() for n in (11, n_seen, n_pseudo))
    comp = Composition(*comp)
    fb = FeatureBatches(f_norm, f_seen, f_pseudo, comp, seed=5, augment=augment)
    streams, aug = _Streams(comp, 11, n_seen, n_pseudo, 5), torch.Generator().manual_seed(5 + AUG_SEED_OFFSET)
    for step in range(6):                      # past a pass over the seen anomalies: the streams wrap
        x, y = fb(step)
        ref, norm, seen, pseudo = streams.draw()
        rows = torch.cat([f_norm[ref], f_norm[norm], f_seen[seen], f_pseudo[pseudo]]).float()
        if augment == "d4":
            code = torch.randint(0, 8, (len(rows),), generator=aug)
            rows = torch.stack([_d4_images(r)[int(c)] for r, c in zip(rows, code)])
        assert x.dtype == torch.float32 and torch.equal(x, rows)
        assert y.tolist() == [-1] * comp.reference + [0] * comp.normal + [1] * comp.seen + [2] * comp.pseudo


def test_profile_choice_fields_are_checked_and_recorded(tmp_path, smoke_run):
    from dpdl.config import get_profile
    with pytest.raises(ValueError, match="head_loss"):
        run(RunConfig("synthetic", profile="smoke", overrides={"head_loss": "hinge"}), progress=False)
    with pytest.raises(ValueError, match="feature_aug"):
        run(RunConfig("synthetic", profile="smoke", overrides={"feature_aug": "rot"}), progress=False)
    with pytest.raises(ValueError, match="pseudo_slots"):
        run(RunConfig("synthetic", profile="smoke", overrides={"pseudo_slots": "both"}), progress=False)
    with pytest.raises(ValueError, match="cached features only"):
        run(RunConfig("synthetic", profile="smoke", overrides={"feature_cache": False, "feature_aug": "d4"}),
            progress=False)
    assert any("RandomRotation" in d for d in get_profile("smoke", feature_aug="d4").deviations())
    rec = run(RunConfig("synthetic", profile="smoke", anomalies=5,
                        overrides={"head_loss": "deviation", "feature_aug": "d4", "pseudo_slots": "normal"}),
              progress=False)
    assert rec["status"] == "ok" and rec["dpdl_config"]["binary_loss"] == "deviation"
    assert rec["profile_settings"]["feature_aug"] == "d4" and rec["profile_settings"]["pseudo_slots"] == "normal"
    assert rec["batch"] == {"normal": 8, "seen": 8, "pseudo": 8, "reference": 0}   # smoke batch 24: DRA's thirds


def test_eval_on_val_scores_the_validation_split_and_prototypes_skip_weight_decay(synthetic_root):
    from dpdl.data import make_split, validation_split
    from dpdl.config import get_profile
    from dpdl.train import _optimizer
    with pytest.raises(ValueError, match="eval_on"):
        run(RunConfig("synthetic", profile="smoke", eval_on="train"), progress=False)
    rec = run(RunConfig("synthetic", profile="smoke", anomalies=4, seed=1, eval_on="val",
                        method_options={"dpl_margin": 0.2}), progress=False)
    val = validation_split(make_split("synthetic", anomalies=4, seed=1), 1)
    assert rec["status"] == "ok" and rec["split"]["fingerprint"] == val.fingerprint
    assert rec["split"]["test_normal"] == 25 and rec["split"]["test_anomaly"] == 2   # no test image scored
    assert rec["dpdl_config"]["dpl_margin"] == 0.2 and rec["dpdl_config"]["dpl_loss"] == "bridge"
    from dpdl.methods import build_method
    from dpdl.net import Adapter, Net
    for decay in (True, False):
        net = Net(Adapter(4, 0), build_method("dpdl", 4, (3, 3), {"prototype_decay": decay}))
        opt, _ = _optimizer(net, get_profile("smoke"))
        protos = {id(p) for p in net.method.prototypes.parameters()}
        wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
        assert all(wd[i] == (get_profile("smoke").weight_decay if decay else 0.0) for i in protos)
        assert any(v > 0 for k, v in wd.items() if k not in protos)
