"""Dataset statistics, the columns of the paper's Table 4, computed from the files themselves.

``dataset_stats("mvtec")`` sums the 15 MVTec AD subsets (Table 4's "MVTecAD" row).
"""
from __future__ import annotations

from collections import Counter

from .protocol import split_normals
from .registry import MVTEC_CLASSES, get_dataset

STATS_KEYS = ("dataset", "n_anomaly_classes", "type", "train_normal", "test_normal", "test_anomaly")


def dataset_stats(name: str, data_root=None) -> dict:
    """Table-4 row of dataset ``name``.

    Out: ``dataset`` (registry name), ``paper_name`` (Table 4's row name), ``n_anomaly_classes``, ``type``
    (Texture/Object/Medical), ``train_normal`` and ``test_normal`` (after the protocol's normal split),
    ``test_anomaly`` (every anomaly, before M are drawn for training, as Table 4 counts them),
    ``anomaly_class_counts`` (class → count) and ``source`` (where the files came from).
    Missing data raise ``FileNotFoundError`` (one sentence, naming where it was looked for).
    """
    if str(name).strip().lower() in ("mvtec", "mvtecad", "mvtec_ad"):
        rows = [dataset_stats(f"mvtec_{s}", data_root) for s in MVTEC_CLASSES]
        return {"dataset": "mvtec", "paper_name": "MVTecAD", "n_anomaly_classes": sum(r["n_anomaly_classes"] for r in rows),
                "type": "", "train_normal": sum(r["train_normal"] for r in rows),
                "test_normal": sum(r["test_normal"] for r in rows),
                "test_anomaly": sum(r["test_anomaly"] for r in rows),
                "anomaly_class_counts": {f"{r['dataset']}/{c}": n for r in rows
                                         for c, n in r["anomaly_class_counts"].items()},
                "source": rows[0]["source"].rsplit("/", 1)[0]}
    ds = get_dataset(name, data_root)
    _, source = ds.locate()
    pool = ds.pool()
    train, test = split_normals(pool)
    per_class = Counter(s.cls for s in pool.anomaly)
    return {"dataset": ds.name, "paper_name": ds.paper_name, "n_anomaly_classes": len(per_class),
            "type": ds.type, "train_normal": len(train), "test_normal": len(test),
            "test_anomaly": len(pool.anomaly), "anomaly_class_counts": dict(sorted(per_class.items())),
            "source": source}
