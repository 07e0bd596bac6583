"""The dataset registry: the paper's nine datasets (MVTec AD as 15 subsets), ``folder`` and ``synthetic``.

``get_dataset(name, data_root=None)`` returns a :class:`Dataset` that knows where its files are
(``.available()``), what layout it expects (``.layout``) and how to read them (``.pool()``).
``list_datasets(data_root=None)`` summarises all of them. Where the files come from is documented in
:mod:`dpdl.data.sources`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import paths
from . import sources
from .samples import Pool
from .sources import MVTEC_LAYOUT, find_child, is_mvtec_layout

MVTEC_CLASSES: dict[str, tuple[str, ...]] = {
    "carpet": ("color", "cut", "hole", "metal_contamination", "thread"),
    "grid": ("bent", "broken", "glue", "metal_contamination", "thread"),
    "leather": ("color", "cut", "fold", "glue", "poke"),
    "tile": ("crack", "glue_strip", "gray_stroke", "oil", "rough"),
    "wood": ("color", "combined", "hole", "liquid", "scratch"),
    "bottle": ("broken_large", "broken_small", "contamination"),
    "capsule": ("crack", "faulty_imprint", "poke", "scratch", "squeeze"),
    "pill": ("color", "combined", "contamination", "crack", "faulty_imprint", "pill_type", "scratch"),
    "transistor": ("bent_lead", "cut_lead", "damaged_case", "misplaced"),
    "zipper": ("broken_teeth", "combined", "fabric_border", "fabric_interior", "rough", "split_teeth",
               "squeezed_teeth"),
    "cable": ("bent_wire", "cable_swap", "combined", "cut_inner_insulation", "cut_outer_insulation",
              "missing_cable", "missing_wire", "poke_insulation"),
    "hazelnut": ("crack", "cut", "hole", "print"),
    "metal_nut": ("bent", "color", "flip", "scratch"),
    "screw": ("manipulated_front", "scratch_head", "scratch_neck", "thread_side", "thread_top"),
    "toothbrush": ("defective",),
}
MVTEC_TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
MVTEC_PARENTS = ("", "mvtec", "mvtec_anomaly_detection", "mvtec_ad", "mvtecad")


@dataclass(frozen=True)
class DatasetSpec:
    """What the registry knows about a dataset before looking at any file.

    ``origin``: ``embedded`` (a PyPI package), ``shared`` (``../shared/data``, then the data root),
    ``data root``, ``folder`` (the data root is the dataset) or ``generated``. ``aliases``: folder names
    looked for under the data root. ``classes``: the documented anomaly classes (empty when only the folders
    tell). ``n_classes``: the paper's count (Table 4). ``paper_name``: the row name in Table 4.
    """

    name: str
    paper_name: str
    type: str
    origin: str
    layout: str
    aliases: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    n_classes: int | None = None
    shared_subdir: str | None = None


def _registry() -> dict[str, DatasetSpec]:
    specs = [
        DatasetSpec("elpv", "ELPV", "Texture", "embedded",
                    "embedded: the PyPI package elpv-dataset (labels.csv + images/); no data root needed",
                    classes=("mono", "poly"), n_classes=2),
        DatasetSpec("brainmri", "BrainMRI", "Medical", "shared",
                    "../shared/data/brainmri, else <root>/brainmri: no/ (normal) and yes/ (anomalies, class "
                    "'tumor'), any image type; or the MVTec layout",
                    aliases=("brainmri", "brain_mri", "brain_tumor", "brain"), classes=("tumor",), n_classes=1,
                    shared_subdir="brainmri"),
        DatasetSpec("sdd", "SDD", "Texture", "shared",
                    "../shared/data/sdd_yolo, else <root>/sdd: YOLO (images/<part>/*.jpg + labels/<part>/*.txt), "
                    "KolektorSDD (kosNN/PartN.jpg + PartN_label.bmp) or the MVTec layout; three bands per image "
                    "along the long side, class 'defect'",
                    aliases=("sdd", "kolektorsdd", "kolektor_sdd", "kolektor", "sdd_yolo"), classes=("defect",),
                    n_classes=1, shared_subdir="sdd_yolo"),
        DatasetSpec("headct", "HeadCT", "Medical", "shared",
                    "../shared/data/headct, else <root>/headct: MVTec layout, or no/ + yes/ (class 'hemorrhage'), "
                    "or Kaggle labels.csv "
                    "(id, hemorrhage) + head_ct/head_ct/NNN.png (or head_ct/NNN.png)",
                    aliases=("headct", "head_ct", "head-ct", "head_ct_hemorrhage"), classes=("hemorrhage",),
                    n_classes=1, shared_subdir="headct"),
        DatasetSpec("optical", "Optical", "Object", "data root",
                    f"<root>/optical (DAGM 2007 converted by the baselines' script), MVTec layout: {MVTEC_LAYOUT}",
                    aliases=("optical", "dagm", "dagm2007"), n_classes=1),
        DatasetSpec("aitex", "AITEX", "Texture", "shared",
                    f"../shared/data/aitex, else <root>/aitex (256x256 tiles, converted by the baselines' rule: "
                    f"dpdl data convert aitex RAW OUT), MVTec layout: {MVTEC_LAYOUT}",
                    aliases=("aitex", "aitex_dataset"), n_classes=12, shared_subdir="aitex"),
        DatasetSpec("mastcam", "Mastcam", "Object", "data root",
                    f"<root>/mastcam (converted by the baselines' script), MVTec layout: {MVTEC_LAYOUT}",
                    aliases=("mastcam",), n_classes=11),
        DatasetSpec("hyperkvasir", "Hyper-Kvasir", "Medical", "data root",
                    f"<root>/hyperkvasir (converted by the baselines' script), MVTec layout: {MVTEC_LAYOUT}",
                    aliases=("hyperkvasir", "hyper-kvasir", "hyper_kvasir", "kvasir"),
                    classes=("barretts", "barretts-short-segment", "esophagitis-a", "esophagitis-b-d"),
                    n_classes=4),
    ]
    for subset, classes in MVTEC_CLASSES.items():
        specs.append(DatasetSpec(
            f"mvtec_{subset}", subset.capitalize(), "Texture" if subset in MVTEC_TEXTURES else "Object",
            "data root",
            f"MVTec AD as downloaded: <root>/{subset}, <root>/mvtec/{subset} or "
            f"<root>/mvtec_anomaly_detection/{subset}, each with train/good, test/good, test/<class>/",
            aliases=(subset,), classes=classes, n_classes=len(classes)))
    specs.append(DatasetSpec("folder", "folder", "Custom", "folder",
                             f"the data root itself, in the MVTec layout: {MVTEC_LAYOUT}"))
    specs.append(DatasetSpec("synthetic", "Synthetic", "Texture", "generated",
                             "generated on demand into <cache>/synthetic/<hash> (MVTec layout)",
                             classes=("scratch", "spot", "stain"), n_classes=3))
    return {s.name: s for s in specs}


REGISTRY: dict[str, DatasetSpec] = _registry()
DATASET_NAMES: tuple[str, ...] = tuple(REGISTRY)


def _data_root_hint(spec: DatasetSpec) -> str:
    return "pass --data-root (Python: data_root=...) or set the environment variable DPDL_DATA"


class Dataset:
    """A registry dataset bound to a data root.

    Attributes: ``name``, ``paper_name``, ``type``, ``layout`` (where the files must be), ``spec``,
    ``data_root`` (``Path`` or ``None``). ``pool()`` reads every sample; ``available()`` says whether the files
    are here and where from.
    """

    def __init__(self, spec: DatasetSpec, data_root: Path | None):
        self.spec = spec
        self.name = spec.name
        self.paper_name = spec.paper_name
        self.type = spec.type
        self.layout = spec.layout
        self.data_root = data_root
        self._pool: Pool | None = None

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, data_root={str(self.data_root) if self.data_root else None!r})"

    # ------------------------------------------------------------------ where
    def locate(self) -> tuple[Path, str]:
        """``(folder, source)``: the dataset's folder and a short description of where it comes from.

        Raises ``FileNotFoundError`` with one sentence naming what was looked for and how to set the data root.
        """
        spec, root = self.spec, self.data_root
        if spec.origin == "embedded":
            folder = sources.elpv_dir()
            return folder, "embedded (PyPI package elpv-dataset)"
        if spec.origin == "generated":
            from .synthetic import synthetic_dir
            return synthetic_dir(), "generated (synthetic textures, cached)"
        if spec.origin == "folder":
            if root is None:
                raise FileNotFoundError(
                    f"dataset 'folder' needs a data root: {_data_root_hint(spec)} pointing at a folder in the "
                    f"MVTec layout ({MVTEC_LAYOUT}).")
            if not root.is_dir():
                raise FileNotFoundError(f"dataset 'folder': data root {root} does not exist; expected a folder in "
                                        f"the MVTec layout ({MVTEC_LAYOUT}).")
            return root, f"data root {root}"
        looked: list[str] = []
        if spec.origin == "shared":
            shared = paths.shared_data_dir() / spec.shared_subdir
            if shared.is_dir():
                return shared, f"shared data {shared}"
            looked.append(str(shared))
        if spec.name.startswith("mvtec_"):
            subset = spec.name[len("mvtec_"):]
            candidates = [(p, subset) for p in MVTEC_PARENTS]
        else:
            candidates = [("", None)]
        if root is None:
            where = f" (looked in {', '.join(looked)})" if looked else ""
            raise FileNotFoundError(
                f"dataset {spec.name!r} needs a data root{where}: {_data_root_hint(spec)} to a folder holding "
                f"{self._expected_under_root()}.")
        for parent, subset in candidates:
            base = root if not parent else find_child(root, [parent])
            if base is None:
                looked.append(str(root / parent / (subset or spec.aliases[0])))
                continue
            hit = find_child(base, [subset] if subset else list(spec.aliases))
            if hit is not None:
                return hit, f"data root {hit}"
            looked.append(str(base / (subset or spec.aliases[0])))
        raise FileNotFoundError(
            f"dataset {spec.name!r} not found: looked for {', '.join(looked)} (folder names match "
            f"case-insensitively); {_data_root_hint(spec)} to the folder that holds {self._expected_under_root()}.")

    def _expected_under_root(self) -> str:
        if self.name.startswith("mvtec_"):
            s = self.name[len("mvtec_"):]
            return f"{s}/ or mvtec/{s}/ or mvtec_anomaly_detection/{s}/"
        return f"{self.spec.aliases[0]}/" if self.spec.aliases else "the dataset"

    def available(self) -> tuple[bool, str]:
        """``(True, source)`` when the files are here (a quick check, images are not decoded), else
        ``(False, reason)``."""
        try:
            folder, source = self.locate()
            if self.spec.origin == "generated":
                return True, source
            if self.spec.origin in ("folder", "data root") and self.name not in ("headct",):
                if not is_mvtec_layout(folder):
                    return False, f"{folder} is not in the MVTec layout ({MVTEC_LAYOUT})"
            return True, source
        except (FileNotFoundError, ValueError) as exc:
            return False, str(exc)

    @property
    def source(self) -> str:
        return self.available()[1]

    # ------------------------------------------------------------------ what
    def pool(self) -> Pool:
        """Every sample of the dataset (read once per ``Dataset`` object and kept)."""
        if self._pool is None:
            self._pool = self._read()
        return self._pool

    def _read(self) -> Pool:
        spec = self.spec
        folder, _ = self.locate()
        if spec.origin == "embedded":
            return sources.read_elpv(folder, spec.name)
        if spec.origin == "generated":
            from .synthetic import make_synthetic
            return sources.read_mvtec_layout(make_synthetic(), spec.name)
        if spec.name == "sdd":
            return sources.read_sdd(folder, spec.name)
        if is_mvtec_layout(folder):
            return sources.read_mvtec_layout(folder, spec.name)
        if spec.name in ("brainmri", "headct") and find_child(folder, ["yes"]) and find_child(folder, ["no"]):
            return sources.read_yes_no(folder, spec.name, spec.classes[0])
        if spec.name == "headct" and (folder / "labels.csv").is_file():
            return sources.read_headct_csv(folder, spec.name)
        raise FileNotFoundError(
            f"dataset {spec.name!r}: folder {folder} is not in the expected layout; expected {spec.layout}.")

    @property
    def anomaly_classes(self) -> list[str]:
        """Sorted anomaly classes: read from the files when they are here, else the documented ones."""
        if self.spec.origin != "generated":
            ok, _ = self.available()
            if ok:
                try:
                    return sorted({s.cls for s in self.pool().anomaly})
                except (FileNotFoundError, ValueError):
                    pass
        return sorted(self.spec.classes)

    @property
    def has_hard_setting(self) -> bool:
        """The hard setting needs two anomaly classes or more (one known, the others unseen)."""
        return len(self.anomaly_classes) > 1


def check_name(name: str) -> DatasetSpec:
    """The spec of ``name``; an unknown name is a ``ValueError`` listing the valid names."""
    key = str(name).strip().lower()
    if key not in REGISTRY and key.startswith("mvtec") and key.replace("mvtec", "mvtec_", 1) in REGISTRY:
        key = key.replace("mvtec", "mvtec_", 1)
    if key not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(DATASET_NAMES)}.")
    return REGISTRY[key]


def get_dataset(name: str, data_root=None) -> Dataset:
    """The dataset ``name`` bound to ``data_root`` (argument, else ``$DPDL_DATA``, else none)."""
    return Dataset(check_name(name), paths.data_root(data_root))


def list_datasets(data_root=None) -> list[dict]:
    """One dict per registry dataset: ``name``, ``anomaly_classes``, ``available``, ``source`` (where it comes
    from, or the layout it needs), ``reason`` (why it is not available, else ``""``), ``type``, ``paper_name``."""
    out = []
    for name in DATASET_NAMES:
        ds = get_dataset(name, data_root)
        ok, why = ds.available()
        out.append({"name": name, "paper_name": ds.paper_name, "type": ds.type,
                    "anomaly_classes": ds.anomaly_classes if ok else sorted(ds.spec.classes),
                    "available": ok, "source": why if ok else ds.spec.origin,
                    "reason": "" if ok else why, "layout": ds.layout})
    return out
