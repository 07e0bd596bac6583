"""The study definition (``study.yaml``) and its expansion into runs.

A run is a :class:`RunSpec`: one dataset, setting, known class, number of seen anomalies M, seed and variant.
Its id is deterministic and readable (``elpv__hard-mono__M1__s3__no_dfl``), and is the name of its folder
``results/runs/<profile>/<run_id>/``. Several groups (tables, figures) can share a run; it is run once.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import yaml

STUDY_YAML = Path(__file__).with_name("study.yaml")
from ..methods import METHODS

BASELINES = tuple(m for m in METHODS if m != "dpdl")   # variant tags that name another method (the registry)
GROUPS = ("table1", "table2", "table3", "table5", "table6", "fig2", "fig3")

# variant tag prefix -> RunConfig field
_TAG_FIELDS = {"C": "prototypes", "eps": "eps", "kappa": "kappa", "lam": "lam", "heads": "heads"}
_FIELD_TAGS = {v: k for k, v in _TAG_FIELDS.items()}
_FLOAT_FIELDS = ("eps", "kappa", "lam")


def load_study(path: str | Path | None = None) -> dict:
    """The parsed study definition (the packaged ``study.yaml`` unless ``path`` is given)."""
    with open(path or STUDY_YAML, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_study(study, source: str = "--study") -> dict:
    """``study`` when every group of every profile is a list of blocks (mappings) with ``datasets`` and well-formed
    ``seeds`` (n >= 1 or a list of integers >= 0), ``anomalies`` (integers >= 0), ``settings`` (general, hard) and
    ``variants``/``sweep``; else a ValueError naming ``source``, the profile, the group and the field."""
    for prof, body in (study.get("profiles") or {}).items():
        groups = body.get("groups") if isinstance(body, dict) else None
        if not isinstance(groups, dict):
            raise ValueError(f"{source}: profile {prof!r} has no mapping 'groups': expected group: [blocks]")
        for group, blocks in groups.items():
            where = f"{source}: profile {prof!r}, group {group!r}"
            if group not in GROUPS:
                raise ValueError(f"{where} is unknown: expected some of {', '.join(GROUPS)}")
            for block in blocks if isinstance(blocks, list) else [blocks]:
                if not isinstance(block, dict) or "datasets" not in block:
                    raise ValueError(f"{where}: a block is {block!r}: expected a mapping with 'datasets'")
                seeds = block.get("seeds", 5)
                if not ((_count(seeds) and seeds >= 1) or (isinstance(seeds, list) and seeds
                                                           and all(_count(x) and x >= 0 for x in seeds))):
                    raise ValueError(f"{where}: seeds {seeds!r}: expected an integer >= 1 or a list of integers "
                                     ">= 0")
                m = block.get("anomalies", [10])
                if not (isinstance(m, list) and m and all(_count(x) and x >= 0 for x in m)):
                    raise ValueError(f"{where}: anomalies {m!r}: expected a list of integers >= 0")
                st = block.get("settings", ["general"])
                if not (isinstance(st, list) and st and all(x in ("general", "hard") for x in st)):
                    raise ValueError(f"{where}: settings {st!r}: expected a list of general, hard")
                for key, kind in (("variants", list), ("sweep", dict)):
                    if key in block and not isinstance(block[key], kind):
                        raise ValueError(f"{where}: {key} {block[key]!r}: expected a {kind.__name__}")
                for key, values in (block.get("sweep") or {}).items():
                    numeric = key != "heads"
                    if not (isinstance(values, list) and values and all(
                            (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0) if numeric
                            else isinstance(v, str) for v in values)):
                        raise ValueError(f"{where}: sweep {key} {values!r}: expected a list of "
                                         f"{'numbers >= 0' if numeric else 'head lists such as n,a,r'}")
    return study


def profiles(study: dict | None = None) -> list[str]:
    return list((study or load_study())["profiles"])


def defaults(study: dict | None = None, dataset: str | None = None) -> dict:
    """The paper's C, eps, kappa, lam and heads (the "full" variant) for ``dataset``: dpdl.methods.dpdl.model.paper_defaults, the
    one source (λ per dataset, Sec. 5.7)."""
    from ..methods.dpdl.model import paper_defaults
    d = paper_defaults(dataset)
    return {k: d[k] for k in ("prototypes", "eps", "kappa", "lam", "heads")}


def variant_config(tag: str, dataset: str | None, study: dict | None = None) -> dict:
    """The DPDL hyper-parameters variant ``tag`` stands for on ``dataset`` now (paper defaults, then the tag's)."""
    return {**defaults(study, dataset), "use_dpl": True, "use_dfl": True, **parse_variant(tag, study)}


def _norm_heads(heads) -> str:
    if isinstance(heads, (list, tuple)):
        heads = ",".join(heads)
    parts = [h.strip() for h in str(heads).replace("+", ",").split(",") if h.strip()]
    order = {"n": 0, "a": 1, "r": 2}
    bad = [h for h in parts if h not in order]
    if bad or not parts:
        raise ValueError(f"heads must be a non-empty subset of n,a,r, got {heads!r}")
    return ",".join(sorted(set(parts), key=order.__getitem__))


def _fmt(v) -> str:
    return f"{float(v):g}" if not isinstance(v, str) else v


def parse_variant(tag: str, study: dict | None = None) -> dict:
    """The RunConfig overrides a variant tag stands for: ``"no_dfl"`` -> ``{"use_dfl": False}``, ``"C=16"`` ->
    ``{"prototypes": 16}``; ``"full"`` -> ``{}``."""
    if tag == "full":
        return {}
    if tag in BASELINES:
        return {"method": tag}
    if tag == "no_dpl":
        return {"use_dpl": False}
    if tag == "no_dfl":
        return {"use_dfl": False}
    m = re.fullmatch(r"(C|eps|kappa|lam|heads)=(.+)", tag)
    if not m:
        raise ValueError(f"unknown variant {tag!r}: expected full, no_dpl, no_dfl, heads=..., C=..., eps=..., "
                         f"kappa=..., lam=... or a baseline ({', '.join(BASELINES)})")
    key, value = _TAG_FIELDS[m.group(1)], m.group(2)
    if key == "heads":
        return {"heads": _norm_heads(value)}
    if key == "prototypes":
        return {"prototypes": int(value)}
    return {key: float(value)}


def variant_tag(overrides: dict, study: dict | None = None, dataset: str | None = None) -> str:
    """The tag of a set of overrides (the inverse of :func:`parse_variant`); the paper's defaults for ``dataset``
    give ``"full"``."""
    if overrides.get("method", "dpdl") != "dpdl":
        return str(overrides["method"])
    d = defaults(study, dataset)
    parts = []
    if overrides.get("use_dpl") is False:
        parts.append("no_dpl")
    if overrides.get("use_dfl") is False:
        parts.append("no_dfl")
    for key in ("heads", "prototypes", "eps", "kappa", "lam"):
        if key in overrides:
            v = _norm_heads(overrides[key]) if key == "heads" else overrides[key]
            if (float(v) if key in _FLOAT_FIELDS else v) != d[key]:
                parts.append(f"{_FIELD_TAGS[key]}={v if key in ('heads', 'prototypes') else _fmt(v)}")
    return "+".join(parts) if parts else "full"


def record_variant(config: dict, study: dict | None = None) -> str:
    """The variant tag of a run record's ``config`` (computed here, so tables do not depend on its spelling)."""
    over = {k: config[k] for k in ("method", "use_dpl", "use_dfl", "heads", "prototypes", "eps", "kappa", "lam")
            if k in config}
    return variant_tag(over, study, config.get("dataset"))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", str(name))


@dataclass(frozen=True)
class RunSpec:
    """One run of the study."""

    dataset: str
    setting: str = "general"          # "general" | "hard"
    known_class: str | None = None
    anomalies: int = 10
    seed: int = 0
    variant: str = "full"
    overrides: tuple = ()             # sorted (key, value) pairs for dpdl.train.RunConfig
    groups: tuple = ()                # the tables/figures this run feeds

    @property
    def run_id(self) -> str:
        setting = "general" if self.setting == "general" else f"hard-{_safe(self.known_class)}"
        return f"{_safe(self.dataset)}__{setting}__M{self.anomalies}__s{self.seed}__{_safe(self.variant.replace(',', '+'))}"

    def config(self, profile: str, data_root=None, out=None) -> dict:
        """Keyword arguments for ``dpdl.train.RunConfig`` (also the experiment notebook's parameters)."""
        from ..methods.dpdl.model import paper_defaults
        cfg = dict(dataset=self.dataset, setting=self.setting, known_class=self.known_class,
                   anomalies=int(self.anomalies), seed=int(self.seed), profile=profile, backbone=None,
                   method="dpdl", **paper_defaults(self.dataset),
                   data_root=None if data_root is None else str(data_root),
                   out=None if out is None else str(out), run_id=self.run_id)
        cfg.update(dict(self.overrides))
        return cfg

    def to_dict(self) -> dict:
        d = asdict(self)
        d["overrides"] = dict(self.overrides)
        d["groups"] = list(self.groups)
        d["run_id"] = self.run_id
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        return cls(dataset=d["dataset"], setting=d.get("setting", "general"), known_class=d.get("known_class"),
                   anomalies=int(d.get("anomalies", 10)), seed=int(d.get("seed", 0)),
                   variant=d.get("variant", "full"), overrides=tuple(sorted(dict(d.get("overrides", {})).items())),
                   groups=tuple(d.get("groups", ())))


@dataclass
class Plan:
    """The runs of one profile, and the datasets skipped (with why)."""

    profile: str
    runs: list[RunSpec] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)          # dataset -> reason
    skipped_groups: dict[str, list[str]] = field(default_factory=dict)  # dataset -> groups it would feed

    def by_group(self) -> dict[str, list[RunSpec]]:
        out: dict[str, list[RunSpec]] = {}
        for r in self.runs:
            for g in r.groups:
                out.setdefault(g, []).append(r)
        return out


def _seeds(value) -> list[int]:
    if isinstance(value, int):
        return list(range(value))
    return [int(s) for s in value]


def _flatten(items) -> list[str]:
    out = []
    for it in items if isinstance(items, (list, tuple)) else [items]:
        out.extend(_flatten(it) if isinstance(it, (list, tuple)) else [str(it)])
    return out


def _norm_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _variants(block: dict, study: dict, dataset: str | None = None) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    for tag in block.get("variants", ["full"] if "sweep" not in block else []):
        over = parse_variant(str(tag), study)
        out.append((variant_tag(over, study, dataset), over))
    for key, values in (block.get("sweep") or {}).items():
        if key not in _FIELD_TAGS:
            raise ValueError(f"cannot sweep {key!r}: expected one of {', '.join(_FIELD_TAGS)}")
        for v in values:
            over = {key: int(v) if key == "prototypes" else (_norm_heads(v) if key == "heads" else float(v))}
            tag = variant_tag(over, study, dataset)     # the dataset's own paper value is its "full" run
            out.append((tag, {} if tag == "full" else over))
    seen, uniq = set(), []
    for tag, over in out:
        if tag not in seen:
            seen.add(tag)
            uniq.append((tag, over))
    return uniq


def _known_classes(dataset: str, rule, data_root) -> list[str]:
    from dpdl.data import get_dataset

    ds = get_dataset(dataset, data_root=data_root)
    if not getattr(ds, "has_hard_setting", True):
        return []
    classes = list(ds.anomaly_classes)
    if rule in (None, "all"):
        return classes
    if rule == "first":
        return classes[:1]
    if rule == "table6":
        from dpdl import paper

        wanted = paper.table6_classes(dataset)
        picked = [c for c in classes if paper.match_class(wanted, c) is not None]
        return picked or classes
    wanted = [str(c) for c in rule]
    missing = [c for c in wanted if c not in classes]
    if missing:
        raise ValueError(f"{dataset} has no anomaly class {', '.join(missing)} (it has {', '.join(classes)})")
    return wanted


def expand(profile: str, *, datasets: Iterable[str] | None = None, only: Iterable[str] | None = None,
           seeds: int | None = None, data_root=None, study: dict | None = None,
           check_available: bool = True, methods: Iterable[str] | None = None) -> Plan:
    """Expand ``profile`` of the study into runs.

    ``datasets`` / ``only`` keep those datasets / groups; ``seeds`` caps every block at that many seeds
    (0..n-1); ``methods`` keeps the runs of those methods (``dpdl``: every DPDL variant, ablations included).
    Datasets that are not available here are skipped (``Plan.skipped`` says why).
    """
    study = study or load_study()
    if profile not in study["profiles"]:
        raise ValueError(f"unknown study profile {profile!r}: expected one of {', '.join(study['profiles'])}")
    groups = study["profiles"][profile]["groups"]
    only = [g.strip() for g in only] if only else None
    if only:
        bad = [g for g in only if g not in GROUPS]
        if bad:
            raise ValueError(f"unknown group {', '.join(bad)}: expected some of {', '.join(GROUPS)}")
    keep_ds = set(datasets) if datasets else None
    keep_methods = {m.strip() for m in methods} if methods else None
    if keep_methods:
        bad = sorted(keep_methods - set(METHODS))
        if bad:
            raise ValueError(f"--methods {', '.join(bad)}: expected some of {', '.join(METHODS)}")
    plan = Plan(profile=profile)
    seen_methods: set[str] = set()
    availability: dict[str, tuple[bool, str]] = {}
    runs: dict[str, RunSpec] = {}
    run_groups: dict[str, list[str]] = {}

    def available(name: str) -> tuple[bool, str]:
        if name not in availability:
            if not check_available:
                availability[name] = (True, "")
            else:
                from dpdl.data import get_dataset
                try:
                    availability[name] = tuple(get_dataset(name, data_root=data_root).available())
                except (ValueError, KeyError, FileNotFoundError) as exc:
                    availability[name] = (False, str(exc.args[0] if exc.args else exc))
        return availability[name]

    for group, blocks in groups.items():
        if only and group not in only:
            continue
        for block in (blocks if isinstance(blocks, list) else [blocks]):
            block_seeds = _seeds(block.get("seeds", 5))
            if seeds is not None:
                block_seeds = block_seeds[: int(seeds)]          # at most: never more seeds than the study's
            for ds in _flatten(block["datasets"]):
                variants = _variants(block, study, ds)
                if keep_ds is not None and ds not in keep_ds:
                    continue
                ok, reason = available(ds)
                if not ok:
                    plan.skipped.setdefault(ds, reason)
                    plan.skipped_groups.setdefault(ds, [])
                    if group not in plan.skipped_groups[ds]:
                        plan.skipped_groups[ds].append(group)
                    continue
                for setting in block.get("settings", ["general"]):
                    if setting == "hard":
                        kcs = _known_classes(ds, block.get("known_classes", "all"), data_root)
                    else:
                        kcs = [None]
                    for kc in kcs:
                        for m in block.get("anomalies", [10]):
                            for s in block_seeds:
                                for tag, over in variants:
                                    spec = RunSpec(dataset=ds, setting=setting, known_class=kc, anomalies=int(m),
                                                   seed=int(s), variant=tag,
                                                   overrides=tuple(sorted(over.items())))
                                    seen_methods.add(over.get("method", "dpdl"))
                                    if keep_methods and over.get("method", "dpdl") not in keep_methods:
                                        continue
                                    rid = spec.run_id
                                    runs.setdefault(rid, spec)
                                    gl = run_groups.setdefault(rid, [])
                                    if group not in gl:
                                        gl.append(group)
    if keep_methods and seen_methods and not keep_methods & seen_methods:
        raise ValueError(f"--methods {', '.join(sorted(keep_methods))}: no run of the {profile} study (as filtered) "
                         f"uses it; its runs use {', '.join(sorted(seen_methods))}")
    plan.runs = [RunSpec(**{**asdict(spec), "groups": tuple(run_groups[rid])}) for rid, spec in runs.items()]
    return plan


def batch_label(batch: list[RunSpec]) -> str:
    """A batch's name in the progress bar: its first run id, ``+k`` more."""
    return batch[0].run_id + (f" +{len(batch) - 1}" if len(batch) > 1 else "")


def default_batch(profile: str) -> int:
    """Runs per kernel (:func:`dpdl.study.runner.execute_batch`): 8 for the feature-cache profiles (runs of
    seconds, where a kernel's start-up and the feature files were a third of a run), 1 otherwise (GPU runs of
    minutes)."""
    from ..config import get_profile
    try:
        return 8 if get_profile(profile).feature_cache else 1
    except ValueError:
        return 1


# Relative time of one run of each method in a feature-cache profile (cpu, in-process means over the five datasets
# of results/benchmarks/study_time.json at fc6f350: DPDL 41 s, DRA 27 s, DevNet 8.7 s, kNN 6.3 s), for a
# (dataset, method) that file does not measure. Orders the batches, never a result.
RELATIVE_COST = {"dpdl": 1.0, "dra": 0.65, "devnet": 0.2, "knn": 0.15}
_MEASURED: dict[str, float] | None = None


def measured_costs() -> dict[str, float]:
    """{"dataset/method": mean seconds of its runs inside ``dpdl train`` / the mean over the datasets' DPDL runs},
    from ``results/benchmarks/study_time.json`` (benchmarks/bench_study_time.py; {} without it). Read once."""
    global _MEASURED
    if _MEASURED is None:
        import json

        from ..paths import results_dir
        try:
            means = json.loads((results_dir() / "benchmarks" / "study_time.json").read_text())["mean_in_process_s"]
            dpdl = [float(v) for k, v in means.items() if k.endswith("/dpdl")]
            _MEASURED = {k: float(v) / (sum(dpdl) / len(dpdl)) for k, v in means.items()} if dpdl else {}
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
            _MEASURED = {}
    return _MEASURED


def run_cost(spec: RunSpec) -> float:
    """A run's estimated time relative to a DPDL run: the measured one of its (dataset, method)
    (:func:`measured_costs`), else :data:`RELATIVE_COST` (1 for an unknown method)."""
    method = dict(spec.overrides).get("method", "dpdl")
    return measured_costs().get(f"{spec.dataset}/{method}", RELATIVE_COST.get(method, 1.0))


def make_batches(todo: list[RunSpec], size: int, slots: int = 1) -> list[list[RunSpec]]:
    """``todo`` in batches of at most ``size`` runs of one dataset (they share its features in memory), and small
    enough that every slot gets work: at most ``ceil(len / slots)`` runs each. A dataset's runs are cut into batches
    longest first (:func:`run_cost`; equal costs keep the order of ``todo``), so a batch holds runs of like cost, and
    the batches come longest first across datasets and methods, so the sweep does not end on one long batch while
    the other slots are idle (longest-processing-time-first scheduling). The order never changes a run's numbers."""
    by_ds: dict[str, list[RunSpec]] = {}
    for s in sorted(todo, key=lambda s: -run_cost(s)):                  # stable
        by_ds.setdefault(s.dataset, []).append(s)
    size = max(1, min(int(size), -(-len(todo) // max(1, slots)))) if todo else 1
    batches = [runs[i:i + size] for runs in by_ds.values() for i in range(0, len(runs), size)]
    return sorted(batches, key=lambda b: -sum(map(run_cost, b)))   # stable: ties keep the plan's order
