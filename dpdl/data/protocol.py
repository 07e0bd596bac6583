"""The open-set supervised AD protocol (DRA/AHL): normal 3:1 split, general and hard settings, M seen anomalies.

Everything is sorted by sample key before anything random happens, so a split depends only on the data,
the dataset, the setting, the known class, M and the seed, never on the file system's listing order.

* **Normal split** – datasets in the MVTec layout keep their own ``train/good`` / ``test/good``. The others:
  ``sklearn.model_selection.train_test_split(normals_sorted_by_key, test_size=0.25, random_state=42)``; the
  42 is fixed (as in the baselines), independent of the run seed.
* **General setting** – all anomalies sorted by key, shuffled with ``numpy.random.RandomState(seed)``
  (``shuffle`` of the index list); the first M train, the rest are tested (all classes) with the test normals.
  At least one anomaly must be left for the test set (M ≤ n − 1).
* **Hard setting** – only the known class's anomalies (sorted, shuffled the same way) are drawn from, the first
  M train (M ≤ size of the class); the test set holds the test normals and every *other* class; the rest of the
  known class is used nowhere. Needs two anomaly classes or more.

Decisions where the baselines' code leaves room (the book's deviations page lists them):

* Sorting is by sample key (Python string order of ``<dataset>/<relative path>[#bandN]``), before the fixed
  3:1 split and before the seeded shuffle. For ELPV the sorted keys are the order of ``labels.csv``, so the
  3:1 split is the one the baselines get when they read the CSV in order; for folder datasets the baselines
  used ``os.listdir`` order, which is not reproducible across file systems.
* General setting: M must leave at least one test anomaly (1 ≤ M ≤ n − 1); hard setting: 1 ≤ M ≤ size of the
  known class (the known class is not tested, so all of it may be seen).
* A known class passed in the general setting is an error rather than silently ignored.
* The seed only drives the anomaly draw here; the normal split is fixed (``random_state=42``).
"""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from .registry import Dataset, get_dataset
from .samples import Pool, Sample, Split

SETTINGS = ("general", "hard")
NORMAL_TEST_SIZE = 0.25
NORMAL_SPLIT_SEED = 42


def split_normals(pool: Pool) -> tuple[list[Sample], list[Sample]]:
    """``(train_normal, test_normal)``: the pool's own split, else the fixed 3:1 split of the sorted normals."""
    if pool.own_split:
        return sorted(pool.train_normal), sorted(pool.test_normal)
    normals = sorted(pool.normal)
    if len(normals) < 2:
        raise ValueError(f"a dataset needs at least 2 normal images for the 3:1 split, found {len(normals)}.")
    train, test = train_test_split(normals, test_size=NORMAL_TEST_SIZE, random_state=NORMAL_SPLIT_SEED)
    return sorted(train), sorted(test)


def draw(samples: list[Sample], seed: int) -> list[Sample]:
    """The samples sorted by key, then shuffled with ``numpy.random.RandomState(seed)``."""
    ordered = sorted(samples)
    idx = np.arange(len(ordered))
    np.random.RandomState(int(seed)).shuffle(idx)
    return [ordered[i] for i in idx]


def _as_int(value, what: str) -> int:
    try:
        if isinstance(value, bool) or int(value) != float(value):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer, got {value!r}.") from None


def make_split(dataset: str | Dataset, setting: str = "general", anomalies: int = 10, seed: int = 0,
               known_class: str | None = None, data_root=None) -> Split:
    """Draw an OSAD split.

    In: a dataset name (or a :class:`~dpdl.data.registry.Dataset`), ``setting`` (``general``/``hard``),
    ``anomalies`` = M seen anomalies (≥ 1), ``seed`` (the anomaly draw), ``known_class`` (hard setting only),
    ``data_root`` (else ``$DPDL_DATA``). Out: a :class:`~dpdl.data.samples.Split`.
    Bad input raises ``ValueError``/``FileNotFoundError`` with one sentence naming the parameter or the path.
    """
    ds = dataset if isinstance(dataset, Dataset) else get_dataset(dataset, data_root)
    setting = str(setting).strip().lower()
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}: expected one of {', '.join(SETTINGS)}.")
    m = _as_int(anomalies, "the number of seen anomalies (anomalies / --anomalies)")
    seed = _as_int(seed, "the seed (seed / --seed)")
    if m < 1:
        raise ValueError(f"the number of seen anomalies (anomalies / --anomalies) must be at least 1, got {m}.")
    if setting == "general" and known_class is not None:
        raise ValueError(f"known_class / --known-class ({known_class!r}) only applies to the hard setting; "
                         f"drop it or use --setting hard.")

    pool = ds.pool()
    classes = sorted({s.cls for s in pool.anomaly})
    train_normal, test_normal = split_normals(pool)

    if setting == "general":
        n = len(pool.anomaly)
        if m > n - 1:
            raise ValueError(f"dataset {ds.name!r} has {n} anomalies: the number of seen anomalies "
                             f"(anomalies / --anomalies) must be between 1 and {n - 1} so that at least one is "
                             f"left for the test set, got {m}.")
        order = draw(pool.anomaly, seed)
        train_anomaly, test_anomaly = order[:m], order[m:]
        known = None
    else:
        if len(classes) < 2:
            raise ValueError(f"dataset {ds.name!r} has one anomaly class ({', '.join(classes)}), so it has no hard "
                             f"setting (that needs a known class and at least one unseen class); use --setting general.")
        if known_class is None:
            raise ValueError(f"the hard setting of dataset {ds.name!r} needs a known class (known_class / "
                             f"--known-class): one of {', '.join(classes)}.")
        known = str(known_class).strip().lower()
        if known not in classes:
            raise ValueError(f"unknown known class {known_class!r} for dataset {ds.name!r}: expected one of "
                             f"{', '.join(classes)}.")
        of_known = [s for s in pool.anomaly if s.cls == known]
        if m > len(of_known):
            raise ValueError(f"class {known!r} of dataset {ds.name!r} has {len(of_known)} anomalies: the number of "
                             f"seen anomalies (anomalies / --anomalies) must be between 1 and {len(of_known)}, "
                             f"got {m}.")
        train_anomaly = draw(of_known, seed)[:m]
        test_anomaly = [s for s in pool.anomaly if s.cls != known]

    test_anomaly = sorted(test_anomaly)
    return Split(dataset=ds.name, setting=setting, known_class=known, anomalies=m, seed=seed,
                 train_normal=train_normal, train_anomaly=sorted(train_anomaly), test_normal=test_normal,
                 test_anomaly=test_anomaly, test_anomaly_classes=sorted({s.cls for s in test_anomaly}))


VAL_NORMAL_SHARE = 0.25
VAL_SEED_OFFSET = 104729


def validation_split(split: Split, seed: int = 0, fold: int = 0) -> Split:
    """A validation split built from ``split``'s training part only (the test images are not touched).

    Validation normals: a quarter of the training normals (round, at least 1, at most all but one); validation
    anomalies: the seen anomalies of fold ``fold`` of 2 (every second one of the seeded order, starting at
    ``fold``); with M = 1 the one seen anomaly is held out, and training uses pseudo anomalies only.  Both draws
    sort by key first, then shuffle with ``numpy.random.RandomState(seed + 104729)``.  The result is a
    :class:`Split` whose "test" lists are the validation samples (``test_anomaly_classes`` theirs) and whose
    training lists are what is left; ``setting``/``known_class``/``seed`` are ``split``'s and ``anomalies`` the
    number of seen anomalies left for training (0 when M = 1).
    """
    seed, fold = _as_int(seed, "the seed (seed / --seed)"), _as_int(fold, "the validation fold")
    if fold not in (0, 1):
        raise ValueError(f"the validation fold must be 0 or 1, got {fold}.")
    normals = draw(split.train_normal, seed + VAL_SEED_OFFSET)
    if len(normals) < 2 or not split.train_anomaly:
        raise ValueError(f"a validation split needs at least 2 training normals and 1 seen anomaly, got "
                         f"{len(normals)} and {len(split.train_anomaly)}.")
    n_val = min(max(1, round(VAL_NORMAL_SHARE * len(normals))), len(normals) - 1)
    anomalies = draw(split.train_anomaly, seed + VAL_SEED_OFFSET)
    held = anomalies if len(anomalies) == 1 else anomalies[fold::2]
    kept = [s for s in anomalies if s not in held]
    held = sorted(held)
    return Split(dataset=split.dataset, setting=split.setting, known_class=split.known_class, anomalies=len(kept),
                 seed=split.seed, train_normal=sorted(normals[n_val:]), train_anomaly=sorted(kept),
                 test_normal=sorted(normals[:n_val]), test_anomaly=held,
                 test_anomaly_classes=sorted({s.cls for s in held}))


def hard_settings(dataset: str, data_root=None) -> list[str]:
    """The known classes of the hard setting (one row each in Tables 2 and 6); ``[]`` for one-class datasets."""
    ds = get_dataset(dataset, data_root)
    classes = ds.anomaly_classes
    return classes if len(classes) > 1 else []
