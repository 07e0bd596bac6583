"""The OSAD data layer: datasets, the split protocol, image loading, statistics and synthetic data.

```python
from dpdl.data import make_split, load_image
split = make_split("elpv", setting="general", anomalies=10, seed=0)
x = load_image(split.train_anomaly[0], 224)   # float tensor (3, 224, 224) in [0, 1]
```
Where each dataset's files must be: :mod:`dpdl.data.sources`. The protocol: :mod:`dpdl.data.protocol`.
"""
from .images import IMAGE_EXTENSIONS, list_images, load_image, load_pil, open_rgb
from .protocol import SETTINGS, hard_settings, make_split, split_normals, validation_split
from .registry import DATASET_NAMES, MVTEC_CLASSES, REGISTRY, Dataset, DatasetSpec, get_dataset, list_datasets
from .samples import NORMAL_CLASS, Pool, Sample, Split
from .sources import band_boxes, rasterise_polygons
from .stats import dataset_stats
from .synthetic import SyntheticParams, make_synthetic

__all__ = [
    "DATASET_NAMES", "IMAGE_EXTENSIONS", "MVTEC_CLASSES", "NORMAL_CLASS", "REGISTRY", "SETTINGS",
    "Dataset", "DatasetSpec", "Pool", "Sample", "Split", "SyntheticParams",
    "band_boxes", "dataset_stats", "get_dataset", "hard_settings", "list_datasets", "list_images",
    "load_image", "load_pil", "make_split", "make_synthetic", "open_rgb", "rasterise_polygons", "split_normals",
    "validation_split",
]
