"""The two records the data layer hands out: :class:`Sample` (one image or crop) and :class:`Split`.

A split is fully described by its sample *keys*: stable ids that do not depend on where the data
live on disk (``elpv/images/cell0001.png``, ``sdd/train/005.jpg#band1``, ``mvtec_carpet/test/cut/000.png``).
Its ``fingerprint`` is a hash of those keys, so two machines that draw the same split print the same
fingerprint.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

NORMAL_CLASS = "good"


@dataclass(frozen=True, order=True)
class Sample:
    """One image (or one crop of an image) of a dataset.

    ``key`` comes first so that sorting samples sorts by key.

    * ``key`` – stable id (dataset name + path relative to the dataset's folder, + ``#bandN`` for crops)
    * ``path`` – absolute path of the image file
    * ``label`` – 0 normal, 1 anomaly
    * ``cls`` – ``"good"`` for normal samples, else the anomaly class (lower case)
    * ``box`` – crop ``(left, top, right, bottom)`` in pixels, or ``None`` for the whole image
    """

    key: str
    path: str
    label: int
    cls: str
    box: tuple[int, int, int, int] | None = None


@dataclass
class Pool:
    """Every sample of a dataset, before any drawing of seen anomalies.

    ``train_normal``/``test_normal`` are set when the dataset ships its own split (MVTec layout);
    otherwise they are ``None`` and the protocol splits ``normal`` 3:1.
    """

    normal: list[Sample]
    anomaly: list[Sample]
    train_normal: list[Sample] | None = None
    test_normal: list[Sample] | None = None

    @property
    def own_split(self) -> bool:
        return self.train_normal is not None


def fingerprint_of(sections: dict[str, list[Sample]]) -> str:
    """First 16 hex digits of the sha256 of the sections' sorted sample keys (section names included)."""
    h = hashlib.sha256()
    for name in sorted(sections):
        h.update(f"[{name}]\n".encode())
        for key in sorted(s.key for s in sections[name]):
            h.update(key.encode("utf-8") + b"\n")
    return h.hexdigest()[:16]


@dataclass
class Split:
    """A drawn OSAD split: who trains, who is tested.

    Lists are sorted by key. ``test_anomaly_classes`` is the sorted list of anomaly classes in the test set
    (in the hard setting: every class except ``known_class``). ``fingerprint`` identifies the four lists.
    """

    dataset: str
    setting: str
    known_class: str | None
    anomalies: int
    seed: int
    train_normal: list[Sample]
    train_anomaly: list[Sample]
    test_normal: list[Sample]
    test_anomaly: list[Sample]
    test_anomaly_classes: list[str] = field(default_factory=list)
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = fingerprint_of(self._sections())

    def _sections(self) -> dict[str, list[Sample]]:
        return {"train_normal": self.train_normal, "train_anomaly": self.train_anomaly,
                "test_normal": self.test_normal, "test_anomaly": self.test_anomaly}

    @property
    def train(self) -> list[Sample]:
        """Training samples: normal then seen anomalies."""
        return self.train_normal + self.train_anomaly

    @property
    def test(self) -> list[Sample]:
        """Test samples: normal then anomalies."""
        return self.test_normal + self.test_anomaly

    def counts(self) -> dict[str, int]:
        """``{"train_normal": n, "train_anomaly": n, "test_normal": n, "test_anomaly": n}``."""
        return {k: len(v) for k, v in self._sections().items()}

    def to_dict(self, samples: bool = False) -> dict:
        """JSON-ready summary: parameters, counts, test classes, fingerprint, the seen anomalies' keys
        (``train_anomaly_keys``), and with ``samples=True`` every section's keys (``<section>_keys``)."""
        out = {"dataset": self.dataset, "setting": self.setting, "known_class": self.known_class,
               "anomalies": self.anomalies, "seed": self.seed, **self.counts(),
               "test_anomaly_classes": list(self.test_anomaly_classes), "fingerprint": self.fingerprint,
               "train_anomaly_keys": [s.key for s in self.train_anomaly]}
        if samples:
            for name, items in self._sections().items():
                out[f"{name}_keys"] = [s.key for s in items]
        return out
